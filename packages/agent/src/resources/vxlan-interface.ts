import { ParseError, type VxlanInterfaceSpec } from "@netfleet/shared";
import { z } from "zod";
import { ipBatch } from "./ip-link.ts";
import { bridgeTool, byAddress, floodCommands, parseFdb, unicastCommands, wantStatics, type FdbEntry } from "./vxlan-interface-fdb.ts";
import { filterCommands, observeFilter, type FilterObservation } from "./vxlan-interface-filter.ts";
import { ownerMarker, type Changes, type ObserveContext, type PlanContext, type ResourceHandler, type ResourcePlan } from "./types.ts";

/**
 * A Linux VXLAN device per network (assignment `vxlan-interface`): made with
 * ip-link(8) `type vxlan id VNI local ADDR [dev UNDERLAY] dstport PORT`,
 * marked as ours by its alias, and given one all-zeros forwarding entry per
 * remote VTEP (bridge(8) `fdb append 00:00:00:00:00:00 dev NAME dst ADDR`:
 * head-end replication of broadcast, unknown unicast and multicast, the
 * unicast-only flood list of RFC 7348 §4.2's alternative to IP multicast).
 *
 * The forwarding database is ours alone: the device is made `nolearning`
 * (ip-link(8)), so a frame received never teaches it where a MAC lives (with
 * learning, one VXLAN packet from anyone who can reach UDP 4789, carrying a
 * VM's MAC as inner source, would send that VM's traffic to the sender).
 * Unicast to a MAC of the inventory goes to the host that holds it by a
 * static entry (`spec.macs`, `bridge fdb replace MAC dev NAME dst ADDR`);
 * entries the device learned before (an older release made it learning)
 * are deleted. And what the device receives is filtered by source: only
 * its remotes may send into its VNI (vxlan-interface-filter.ts).
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
  /** info_data.learning: whether the device learns MAC locations from what it receives (ip-link(8) `[no]learning`). */
  learning?: boolean;
}

/** A device, its flood list (the `dst` of its permanent all-zeros entries, sorted), its static and learned unicast entries, and its source filter. */
export interface VxlanObservation {
  link?: VxlanLink;
  flood: string[];
  /** Permanent unicast entries, by MAC. Absent: not read (an observation of an earlier shape). */
  statics?: FdbEntry[];
  /** Entries the device learned (not permanent). */
  learned?: FdbEntry[];
  /** The nft table of the device's source filter. */
  filter?: FilterObservation;
}

const IpLink = z.looseObject({
  ifname: z.string(),
  mtu: z.number(),
  flags: z.array(z.string()).default([]),
  ifalias: z.string().optional(),
  linkinfo: z
    .looseObject({
      info_kind: z.string().optional(),
      info_data: z
        .looseObject({ id: z.number().optional(), local: z.string().optional(), link: z.string().optional(), port: z.number().optional(), learning: z.boolean().optional() })
        .optional(),
    })
    .optional(),
});

/**
 * The link `name` from `ip -details -json link show` output (iproute2 6.x:
 * linkinfo.info_data id, local, link, port, learning), or undefined when absent.
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
      ...(kind === "vxlan" && info?.learning !== undefined ? { learning: info.learning } : {}),
      mtu: l.data.mtu,
      up: l.data.flags.includes("UP"),
      ...(l.data.ifalias !== undefined && l.data.ifalias !== "" ? { alias: l.data.ifalias } : {}),
    };
  }
  return undefined;
}

export { FLOOD_MAC, parseFdb, parseFloodList, type FdbEntry, type FdbView } from "./vxlan-interface-fdb.ts";
export { filterTable, filterTableName } from "./vxlan-interface-filter.ts";

function createLines(spec: VxlanInterfaceSpec, owner: string): string[][] {
  return [
    ["link", "add", "name", spec.name, "type", "vxlan", "id", String(spec.vni), "local", spec.local, ...(spec.underlay ? ["dev", spec.underlay] : []), "dstport", String(spec.port), "nolearning"],
    ["link", "set", "dev", spec.name, "alias", ownerMarker(owner)],
    ["link", "set", "dev", spec.name, "mtu", String(spec.mtu)],
    ["link", "set", "dev", spec.name, "up"],
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

const entries = (l: readonly FdbEntry[]) => l.map((e) => `${e.mac} ${e.dst}`);

export const vxlanInterface: ResourceHandler<VxlanInterfaceSpec, VxlanObservation> = {
  kind: "vxlan-interface",
  async observe(spec, ctx: ObserveContext) {
    const link = parseVxlanLink((await ctx.read(ctx.tools.ip("-details", "-json", "link", "show"))).stdout, spec.name);
    const filter = await observeFilter(spec.name, ctx);
    if (link?.kind !== "vxlan") return link ? { link, flood: [], filter } : { flood: [], filter };
    const fdb = parseFdb((await ctx.read(bridgeTool("-json", "fdb", "show", "dev", spec.name))).stdout);
    return { link, ...fdb, filter };
  },
  absent: () => ({ flood: [], statics: [], learned: [], filter: { exists: false, lines: [] } }),
  plan(spec, o, ctx: PlanContext): ResourcePlan {
    const { link, flood } = o;
    const statics = o.statics ?? [];
    const learned = o.learned ?? [];
    const filter = o.filter ?? { exists: false, lines: [] };
    const wantFlood = [...spec.remotes].sort(byAddress);
    const want = wantStatics(spec.macs);
    const filterCmds = filterCommands(spec, filter, ctx.owner);
    const fdbChanges = (haveFlood: string[], haveStatics: FdbEntry[], haveLearned: FdbEntry[]): Changes => {
      const c: Changes = {};
      if (haveFlood.join(",") !== wantFlood.join(",")) c.remotes = { old: haveFlood, new: wantFlood };
      if (entries(haveStatics).join(",") !== entries(want).join(",")) c.macs = { old: entries(haveStatics), new: entries(want) };
      if (haveLearned.length > 0) c.learned = { old: entries(haveLearned), new: [] };
      return c;
    };
    const filterChange: Changes = filterCmds.length > 0 ? { filter: { old: filter.exists ? "differs" : null, new: `only from ${wantFlood.length ? wantFlood.join(", ") : "nobody"}` } } : {};
    // The filter first: a new device never receives a packet before its filter is in place.
    const fresh = (lines: string[][]) => [...filterCmds, ...ipBatch(ctx, lines), ...floodCommands(spec.name, spec.remotes, []), ...unicastCommands(spec.name, want, { statics: [], learned: [] })];
    if (!link) return { changes: { present: { old: false, new: true }, ...fdbChanges([], [], []), ...filterChange }, commands: fresh(createLines(spec, ctx.owner)) };
    if (link.kind !== "vxlan") return { changes: {}, commands: [], blocked: `${spec.name} exists but is a ${link.kind ?? "plain"} device, not a vxlan device` };
    const drift = identityDrift(spec, link);
    const ours = link.alias === ownerMarker(ctx.owner);
    const changes: Changes = { ...drift, ...fdbChanges(flood, statics, learned) };
    if (link.learning !== false) changes.learning = { old: link.learning ?? null, new: false };
    if (!ours) {
      // The device is never changed; its source filter (a table of ours) is made all the same when it matches.
      const matches = Object.keys(changes).length === 0 && link.mtu === spec.mtu && link.up;
      return matches
        ? { changes: filterChange, commands: filterCmds, comment: `${spec.name} is not marked as ours but already matches; left as is` }
        : { changes: {}, commands: [], blocked: `vxlan device ${spec.name} exists and is not managed by netfleet; to hand it over run: ip link set dev ${spec.name} alias ${ownerMarker(ctx.owner)}` };
    }
    if (Object.keys(drift).length > 0) {
      // VNI, local address, underlay and port are fixed at creation (ip-link(8) has no changelink for them): made anew.
      delete changes.learning;
      return { changes: { ...changes, ...filterChange }, commands: fresh([["link", "del", "dev", spec.name], ...createLines(spec, ctx.owner)]) };
    }
    const lines: string[][] = [];
    // Learning can be turned off on a live device (ip-link(8) `type vxlan nolearning` is a changelink flag).
    if (link.learning !== false) lines.push(["link", "set", "dev", spec.name, "type", "vxlan", "nolearning"]);
    if (link.mtu !== spec.mtu) {
      changes.mtu = { old: link.mtu, new: spec.mtu };
      lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
    }
    if (!link.up) {
      changes.up = { old: false, new: true };
      lines.push(["link", "set", "dev", spec.name, "up"]);
    }
    return {
      changes: { ...changes, ...filterChange },
      commands: [...filterCmds, ...ipBatch(ctx, lines), ...floodCommands(spec.name, spec.remotes, flood), ...unicastCommands(spec.name, want, { statics, learned })],
    };
  },
};
