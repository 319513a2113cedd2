import { z } from "zod";
import { NETWORK_NAME } from "../names.ts";
import { dnsLabel, ipv4, json } from "./schema-fields.ts";

/**
 * The `mirrors` section: port mirroring through the Open vSwitch Mirror
 * table (ovs-vswitchd.conf.db(5), table Mirror: select_all,
 * select_src_port, select_dst_port, output_port). Sources are a network's
 * VM ports (by VM name) or the whole network; the destination is a capture
 * VM's port in the same network, or a GRE or ERSPAN tunnel port whose
 * Interface options are OVS's own (ovs-vswitchd.conf.db(5), Interface
 * options:remote_ip, key, erspan_ver, erspan_idx, erspan_dir, erspan_hwid).
 */

const remoteIp = ipv4.describe("The tunnel's remote end (OVS Interface options:remote_ip), reached through the host's own routing; not inside a VM network of the site");

/** A GRE tunnel port as the mirror's output (OVS Interface type gre). */
export const GreDestination = z.strictObject({
  remote_ip: remoteIp,
  key: z.number().int().min(0).max(4294967295).optional().describe("GRE key, 0-4294967295 (OVS options:key; RFC 2890). Default: no key"),
});

/** An ERSPAN tunnel port as the mirror's output (OVS Interface type erspan; ERSPAN type II = version 1, type III = version 2). */
export const ErspanDestination = z.strictObject({
  remote_ip: remoteIp,
  key: z.number().int().min(0).max(1023).default(1).describe("ERSPAN session ID, 0-1023 (OVS options:key, a 10-bit field). Default 1"),
  erspan_ver: z.union([z.literal(1).describe("1: ERSPAN type II"), z.literal(2).describe("2: ERSPAN type III")]).default(1).describe("ERSPAN version: 1 (type II) or 2 (type III), OVS options:erspan_ver. Default 1"),
  erspan_idx: z.number().int().min(0).max(1048575).optional().describe("Version 1 only: the 20-bit port index carried in each frame (OVS options:erspan_idx). Default: OVS's (0)"),
  erspan_dir: z.union([z.literal(0).describe("0: ingress traffic"), z.literal(1).describe("1: egress traffic")]).optional().describe("Version 2 only: direction bit, 0 ingress, 1 egress (OVS options:erspan_dir). Default: OVS's (0)"),
  erspan_hwid: z.number().int().min(0).max(63).optional().describe("Version 2 only: 6-bit hardware ID (OVS options:erspan_hwid). Default: OVS's (0)"),
});

/** Where a mirror's frames go: exactly one of a capture VM, a GRE target, an ERSPAN target. */
export const MirrorDestination = json(
  z
  .strictObject({
    vm: dnsLabel.optional().describe("A capture VM of the mirror's network: its port becomes the OVS Mirror output_port, which then receives only mirrored frames (OVS discards whatever the VM sends on it; give the capture VM a second NIC for its own traffic). It sees the sources on its own host"),
    gre: GreDestination.optional().describe("A GRE tunnel to a remote capture point: a port mr-<mirror> of type gre on the network's bridge on every VM host carrying the network"),
    erspan: ErspanDestination.optional().describe("An ERSPAN tunnel to a remote capture point: a port mr-<mirror> of type erspan on the network's bridge on every VM host carrying the network"),
  })
  .check((ctx) => {
    const given = (["vm", "gre", "erspan"] as const).filter((k) => ctx.value[k] !== undefined);
    if (given.length !== 1) ctx.issues.push({ code: "custom", message: `give exactly one of vm, gre or erspan${given.length > 1 ? ` (got ${given.join(", ")})` : ""}`, input: ctx.value });
  }),
  { minProperties: 1, maxProperties: 1 },
);

/** One mirror: a network's VM ports (or the whole network) copied to a destination. */
export const MirrorSpec = json(z.strictObject({
  network: json(z.string().regex(NETWORK_NAME, "must be a network name"), { pattern: NETWORK_NAME.source }).describe("The network whose traffic is mirrored: its bridge br-<network> holds the OVS Mirror on each VM host"),
  vms: json(z.array(dnsLabel.describe("A VM of the mirror's network")).min(1, "give at least one VM, or leave vms out to mirror the whole network"), { uniqueItems: true })
    .optional()
    .describe("Source VMs of the network, by name: their ports are the mirror's select_src_port/select_dst_port. Absent: the whole network (select_all: every port of the network's bridge, its uplink included)"),
  direction: z
    .enum(["both", "egress", "ingress"])
    .default("both")
    .describe("What of the source VMs is copied, seen from the VM (as Neutron QoS rules are): egress = what they send (select_src_port), ingress = what they receive (select_dst_port), both. Default both; a whole-network mirror is always both (select_all)"),
  destination: MirrorDestination.describe("Where the copies go: a capture VM (vm), or a GRE or ERSPAN target"),
}), {
  // A whole-network mirror (no vms) copies both directions.
  if: { not: { properties: { vms: true }, required: ["vms"] } },
  then: { properties: { direction: { const: "both" } } },
});

export type GreDestination = z.output<typeof GreDestination>;
export type ErspanDestination = z.output<typeof ErspanDestination>;
export type MirrorDestination = z.output<typeof MirrorDestination>;
export type MirrorSpec = z.output<typeof MirrorSpec>;

/** The keys a `mirrors` entry may have at `path` (`["mirrors", name, ...]`), for problems.ts's "did you mean". */
export function mirrorKeysFor(path: readonly (string | number)[]): string[] {
  if (path.length === 2) return Object.keys(MirrorSpec.shape);
  if (path[2] !== "destination") return [];
  if (path.length === 3) return ["vm", "gre", "erspan"];
  if (path[3] === "gre") return Object.keys(GreDestination.shape);
  if (path[3] === "erspan") return Object.keys(ErspanDestination.shape);
  return [];
}
