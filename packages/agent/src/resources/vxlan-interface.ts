import { ParseError, type VxlanInterfaceSpec } from "@netfleet/shared";
import { z } from "zod";
import { mutate, type Command } from "../exec/runner.ts";
import { ipBatch } from "./ip-link.ts";
import { ownerMarker, type Changes, type ObserveContext, type PlanContext, type ResourceHandler, type ResourcePlan } from "./types.ts";

/**
 * A Linux VXLAN device per network (assignment `vxlan-interface`): made with
 * ip-link(8) `type vxlan id VNI local ADDR [dev UNDERLAY] dstport PORT`,
 * marked as ours by its alias, and given one all-zeros forwarding entry per
 * remote VTEP (bridge(8) `fdb append 00:00:00:00:00:00 dev NAME dst ADDR`:
 * head-end replication of broadcast, unknown unicast and multicast, the
 * unicast-only flood list of RFC 7348 §4.2's alternative to IP multicast).
 * Unicast to a MAC the device has learned goes to that one remote.
 *
 * Why a kernel device and not an OVS `type=vxlan` Interface
 * (ovs-vswitchd.conf.db(5) `options:remote_ip`): plugged into the network's
 * bridge as an OVS system port it works the same on the kernel (system)
 * datapath and on the userspace (netdev) one, where OVS's own tunnels need
 * the underlay address on an OVS bridge (Open vSwitch "userspace-tunneling"
 * docs) and would take the management address off the host's NIC. On the
 * backend the gateway address sits on the device itself, as it sits on
 * bond0.<vid> in kernel mode.
 */

/** The all-zeros MAC of the flood entries (bridge(8): "00:00:00:00:00:00" is the default destination). */
export const FLOOD_MAC = "00:00:00:00:00:00";

/** What the agent reads of one VXLAN device (`ip -details -json link show`). */
export interface VxlanLink {
  name: string;
  /** linkinfo.info_kind: "vxlan", or another kind for a device of the same name that is not one. */
  kind?: string;
  vni?: number;
  local?: string;
  /** info_data.link: the `dev` the tunnel is bound to. */
  underlay?: string;
  port?: number;
  mtu: number;
  up: boolean;
  alias?: string;
}

/** A device and its flood list (the `dst` of its permanent all-zeros entries, sorted). */
export interface VxlanObservation {
  link?: VxlanLink;
  flood: string[];
}

const IpLink = z.looseObject({
  ifname: z.string(),
  mtu: z.number(),
  flags: z.array(z.string()).default([]),
  ifalias: z.string().optional(),
  linkinfo: z
    .looseObject({
      info_kind: z.string().optional(),
      info_data: z.looseObject({ id: z.number().optional(), local: z.string().optional(), link: z.string().optional(), port: z.number().optional() }).optional(),
    })
    .optional(),
});

/**
 * The link `name` from `ip -details -json link show` output (iproute2 6.x:
 * linkinfo.info_data id, local, link, port), or undefined when absent.
 * @throws ParseError on output that is not that JSON.
 */
export function parseVxlanLink(stdout: string, name: string): VxlanLink | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout || "[]");
  } catch {
    throw new ParseError("ip -details -json link show", "not JSON");
  }
  const list = z.array(z.unknown()).safeParse(raw);
  if (!list.success) throw new ParseError("ip -details -json link show", "not a list");
  for (const item of list.data) {
    const l = IpLink.safeParse(item);
    if (!l.success || l.data.ifname !== name) continue;
    const info = l.data.linkinfo?.info_data;
    const kind = l.data.linkinfo?.info_kind;
    return {
      name,
      ...(kind !== undefined ? { kind } : {}),
      ...(kind === "vxlan" && info?.id !== undefined ? { vni: info.id } : {}),
      ...(kind === "vxlan" && info?.local !== undefined ? { local: info.local } : {}),
      ...(kind === "vxlan" && info?.link !== undefined ? { underlay: info.link } : {}),
      ...(kind === "vxlan" && info?.port !== undefined ? { port: info.port } : {}),
      mtu: l.data.mtu,
      up: l.data.flags.includes("UP"),
      ...(l.data.ifalias !== undefined && l.data.ifalias !== "" ? { alias: l.data.ifalias } : {}),
    };
  }
  return undefined;
}

const FdbEntry = z.looseObject({ mac: z.string(), dst: z.string().optional(), state: z.string().optional() });

/**
 * The flood list of a device from `bridge -json fdb show dev NAME`: the
 * `dst` of each permanent all-zeros entry, sorted (learned entries, with a
 * VM's MAC, are left out).
 * @throws ParseError on output that is not that JSON.
 */
export function parseFloodList(stdout: string): string[] {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout || "[]");
  } catch {
    throw new ParseError("bridge -json fdb show", "not JSON");
  }
  const list = z.array(FdbEntry).safeParse(raw);
  if (!list.success) throw new ParseError("bridge -json fdb show", `${list.error.issues[0]?.path.join(".")}: ${list.error.issues[0]?.message}`);
  return list.data.filter((e) => e.mac === FLOOD_MAC && e.dst !== undefined && e.state === "permanent").map((e) => e.dst!).sort(byAddress);
}

function byAddress(a: string, b: string): number {
  const n = (s: string) => s.split(".").reduce((v, o) => v * 256 + Number(o), 0);
  return n(a) - n(b);
}

/** bridge(8) argv (iproute2), the tool of the forwarding database. */
function bridgeTool(...args: string[]): string[] {
  return ["bridge", ...args];
}

function createLines(spec: VxlanInterfaceSpec, owner: string): string[][] {
  return [
    ["link", "add", "name", spec.name, "type", "vxlan", "id", String(spec.vni), "local", spec.local, ...(spec.underlay ? ["dev", spec.underlay] : []), "dstport", String(spec.port)],
    ["link", "set", "dev", spec.name, "alias", ownerMarker(owner)],
    ["link", "set", "dev", spec.name, "mtu", String(spec.mtu)],
    ["link", "set", "dev", spec.name, "up"],
  ];
}

function floodCommands(spec: VxlanInterfaceSpec, have: string[]): Command[] {
  const want = [...spec.remotes].sort(byAddress);
  return [
    ...have.filter((d) => !want.includes(d)).map((d) => mutate(bridgeTool("fdb", "del", FLOOD_MAC, "dev", spec.name, "dst", d))),
    ...want.filter((d) => !have.includes(d)).map((d) => mutate(bridgeTool("fdb", "append", FLOOD_MAC, "dev", spec.name, "dst", d))),
  ];
}

/** Which of the device's settings differ from the spec (those only a new device can change). */
function identityDrift(spec: VxlanInterfaceSpec, l: VxlanLink): Changes {
  const c: Changes = {};
  if (l.vni !== spec.vni) c.vni = { old: l.vni, new: spec.vni };
  if (l.local !== spec.local) c.local = { old: l.local, new: spec.local };
  if ((l.underlay ?? undefined) !== spec.underlay) c.underlay = { old: l.underlay ?? null, new: spec.underlay ?? null };
  if (l.port !== spec.port) c.port = { old: l.port, new: spec.port };
  return c;
}

export const vxlanInterface: ResourceHandler<VxlanInterfaceSpec, VxlanObservation> = {
  kind: "vxlan-interface",
  async observe(spec, ctx: ObserveContext) {
    const link = parseVxlanLink((await ctx.read(ctx.tools.ip("-details", "-json", "link", "show"))).stdout, spec.name);
    if (link?.kind !== "vxlan") return link ? { link, flood: [] } : { flood: [] };
    const fdb = await ctx.read(bridgeTool("-json", "fdb", "show", "dev", spec.name));
    return { link, flood: parseFloodList(fdb.stdout) };
  },
  absent: () => ({ flood: [] }),
  plan(spec, { link, flood }, ctx: PlanContext): ResourcePlan {
    const wantFlood = [...spec.remotes].sort(byAddress);
    const floodChange = (): Changes => (flood.join(",") === wantFlood.join(",") ? {} : { remotes: { old: flood, new: wantFlood } });
    if (!link) {
      return {
        changes: { present: { old: false, new: true }, ...floodChange() },
        commands: [...ipBatch(ctx, createLines(spec, ctx.owner)), ...floodCommands(spec, [])],
      };
    }
    if (link.kind !== "vxlan") return { changes: {}, commands: [], blocked: `${spec.name} exists but is a ${link.kind ?? "plain"} device, not a vxlan device` };
    const drift = identityDrift(spec, link);
    const ours = link.alias === ownerMarker(ctx.owner);
    const matches = Object.keys(drift).length === 0 && link.mtu === spec.mtu && link.up && Object.keys(floodChange()).length === 0;
    if (!ours) {
      return matches
        ? { changes: {}, commands: [], comment: `${spec.name} is not marked as ours but already matches; left as is` }
        : { changes: {}, commands: [], blocked: `vxlan device ${spec.name} exists and is not managed by netfleet; to hand it over run: ip link set dev ${spec.name} alias ${ownerMarker(ctx.owner)}` };
    }
    if (Object.keys(drift).length > 0) {
      // VNI, local address, underlay and port are fixed at creation (ip-link(8) has no changelink for them): made anew.
      return {
        changes: { ...drift, ...floodChange() },
        commands: [...ipBatch(ctx, [["link", "del", "dev", spec.name], ...createLines(spec, ctx.owner)]), ...floodCommands(spec, [])],
      };
    }
    const changes: Changes = {};
    const lines: string[][] = [];
    if (link.mtu !== spec.mtu) {
      changes.mtu = { old: link.mtu, new: spec.mtu };
      lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
    }
    if (!link.up) {
      changes.up = { old: false, new: true };
      lines.push(["link", "set", "dev", spec.name, "up"]);
    }
    Object.assign(changes, floodChange());
    return { changes, commands: [...ipBatch(ctx, lines), ...floodCommands(spec, flood)] };
  },
};
