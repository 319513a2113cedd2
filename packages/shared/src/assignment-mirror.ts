import { z } from "zod";
import { Ipv4Address } from "./ipv4.ts";
import { INTERFACE_NAME, MAC_ADDRESS, NETWORK_NAME } from "./names.ts";

/**
 * A port mirror on one bridge of one host, through the Open vSwitch Mirror
 * table (ovs-vswitchd.conf.db(5), table Mirror). The agent finds VM ports
 * live, as vm-port-policy does: any Interface whose `external_ids:attached-mac`
 * (set by libvirt) is one of the MACs named here. Its Mirror row carries
 * `external_ids:netfleet-owner=<site>`; a tunnel port it creates carries
 * `external_ids:netfleet-mirror=<site>` (not the bridge's owner key: the
 * ovs-bridge resource removes marked ports it does not list).
 */

const ifname = z.string().regex(INTERFACE_NAME);
const mac = z.string().regex(MAC_ADDRESS);

/** A GRE or ERSPAN port the mirror outputs to (OVS Interface type gre / erspan and its options). */
export const MirrorTunnel = z.strictObject({
  /** The port's (and its interface's) name: mr-<mirror>. */
  port: ifname,
  type: z.enum(["gre", "erspan"]),
  /** options:remote_ip. */
  remoteIp: Ipv4Address,
  /** options:key: the GRE key (RFC 2890), or the ERSPAN session ID (0-1023). */
  key: z.number().int().min(0).max(4294967295).optional(),
  /** erspan only: options:erspan_ver (1: type II, 2: type III). */
  erspanVersion: z.union([z.literal(1), z.literal(2)]).optional(),
  /** erspan version 1 only: options:erspan_idx (20 bits). */
  erspanIndex: z.number().int().min(0).max(1048575).optional(),
  /** erspan version 2 only: options:erspan_dir (0 ingress, 1 egress). */
  erspanDir: z.union([z.literal(0), z.literal(1)]).optional(),
  /** erspan version 2 only: options:erspan_hwid (6 bits). */
  erspanHwid: z.number().int().min(0).max(63).optional(),
});

/** One OVS Mirror row of ours on `bridge`, named `name`. */
export const OvsMirrorSpec = z.strictObject({
  kind: z.literal("ovs-mirror"),
  /** The inventory's mirror name; the Mirror row's `name`. */
  name: z.string().regex(NETWORK_NAME),
  bridge: ifname,
  /** The source VMs' MACs (lowercase); absent: the whole bridge (select_all). */
  sourceMacs: z.array(mac).optional(),
  /** VM-centric: egress = frames the VMs send (select_src_port), ingress = frames they receive (select_dst_port), both. */
  direction: z.enum(["both", "egress", "ingress"]),
  /** Exactly one: the capture VM's port (by its MAC), or a tunnel port. */
  output: z.union([z.strictObject({ vmMac: mac }), z.strictObject({ tunnel: MirrorTunnel })]),
});

export type MirrorTunnel = z.output<typeof MirrorTunnel>;
export type OvsMirrorSpec = z.output<typeof OvsMirrorSpec>;
