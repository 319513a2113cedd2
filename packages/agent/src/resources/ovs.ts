import type { OvsBridgeSpec, OvsPortSpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { sameList } from "./ip-link.ts";
import { emptyOvsState, observeOvs, type OvsPort, type OvsState } from "./ovsdb.ts";
import type { Changes, ResourceHandler, ResourcePlan } from "./types.ts";

/** The external_ids key of the owner mark on our OVS bridges and ports (value: the site). */
export const OWNER_KEY = "netfleet-owner";

function isOurs(ids: Record<string, string>, owner: string): boolean {
  return ids[OWNER_KEY] === owner;
}

/** Interface names of a port, resolved through the Interface table. */
function portMembers(state: OvsState, port: OvsPort): string[] {
  const byUuid = new Map([...state.interfaces.values()].map((i) => [i.uuid, i.name]));
  return port.interfaceUuids.map((u) => byUuid.get(u) ?? u).sort();
}

/** ovs-vsctl arguments that create one port with all its settings. */
function addPortArgs(bridge: string, p: OvsPortSpec, owner: string): string[] {
  const args =
    p.type === "bond" ? ["--", "add-bond", bridge, p.name, ...(p.members ?? [])] : ["--", "add-port", bridge, p.name];
  args.push("--", "set", "Port", p.name, ...portColumns(p), `external_ids:${OWNER_KEY}=${owner}`);
  args.push(...interfaceArgs(p));
  return args;
}

function portColumns(p: OvsPortSpec): string[] {
  const cols: string[] = [];
  if (p.tag !== undefined) cols.push(`tag=${p.tag}`);
  if (p.trunks !== undefined && p.trunks.length > 0) cols.push(`trunks=${[...p.trunks].sort((a, b) => a - b).join(",")}`);
  if (p.type === "bond" && p.bond_mode) cols.push(`bond_mode=${p.bond_mode}`);
  if (p.type === "bond" && p.lacp) cols.push(`lacp=${p.lacp}`);
  return cols;
}

function interfaceArgs(p: OvsPortSpec): string[] {
  if (p.type === "patch") return ["--", "set", "Interface", p.name, "type=patch", `options:peer=${p.peer}`];
  const mtu = p.mtu === undefined ? [] : [`mtu_request=${p.mtu}`];
  if (p.type === "internal") {
    return ["--", "set", "Interface", p.name, "type=internal", ...(p.mac ? [`mac="${p.mac}"`] : []), ...mtu];
  }
  if (p.mtu === undefined) return [];
  return mtuInterfaces(p).flatMap((name) => ["--", "set", "Interface", name, `mtu_request=${p.mtu}`]);
}

/** The interfaces whose MTU a port's `mtu` sets: a bond's members, or the port's own interface. */
function mtuInterfaces(p: OvsPortSpec): string[] {
  if (p.type === "patch") return [];
  return p.type === "bond" ? [...(p.members ?? [])].sort() : [p.name];
}

/** What differs between a desired port and the one OVS has; empty when it matches. */
function portDrift(state: OvsState, want: OvsPortSpec, have: OvsPort): Changes {
  const changes: Changes = {};
  const iface = state.interfaces.get(want.name);
  if (want.type === "bond") {
    const members = portMembers(state, have);
    const wantMembers = [...(want.members ?? [])].sort();
    if (!sameList(members, wantMembers)) changes.members = { old: members, new: wantMembers };
    if (have.bondMode !== want.bond_mode) changes.bond_mode = { old: have.bondMode, new: want.bond_mode };
    // An output without the column (have.lacp undefined) says nothing about it.
    if (have.lacp !== undefined && have.lacp !== (want.lacp ?? "off")) changes.lacp = { old: have.lacp, new: want.lacp ?? "off" };
  } else {
    const haveType = iface?.type ?? "system";
    const wantType = want.type;
    if (haveType !== wantType) changes.type = { old: haveType, new: wantType };
    if (want.type === "patch" && iface?.options.peer !== want.peer) changes.peer = { old: iface?.options.peer, new: want.peer };
  }
  if (have.tag !== want.tag) changes.tag = { old: have.tag, new: want.tag };
  const wantTrunks = [...(want.trunks ?? [])].sort((a, b) => a - b);
  if (!sameList(have.trunks, wantTrunks)) changes.trunks = { old: have.trunks, new: wantTrunks };
  if (want.mac && iface?.mac?.toLowerCase() !== want.mac.toLowerCase()) changes.mac = { old: iface?.mac, new: want.mac };
  if (want.mtu !== undefined) {
    const off = mtuInterfaces(want).filter((name) => state.interfaces.get(name)?.mtuRequest !== want.mtu);
    if (off.length > 0) changes.mtu = { old: Object.fromEntries(off.map((n) => [n, state.interfaces.get(n)?.mtuRequest ?? null])), new: want.mtu };
  }
  return changes;
}

/**
 * Why a bond port cannot carry traffic as specified, or undefined when it can:
 * a `balance-tcp` bond without LACP (`lacp` absent or `off`). OVS sends no
 * frame out of a balance-tcp bond and admits none into it unless LACP is
 * negotiated (ovs-vswitchd.conf.db(5) `bond_mode`: balance-tcp requires
 * LACP), while `ovs-appctl bond/show` still shows every member enabled; such
 * a bond cuts the host off every network behind it. Measured on OVS 3.1
 * (test/lab/uplink-lacp.test.ts, __fixtures__/ovs/LACP.md): not a frame
 * either way, whether the switch runs LACP on those ports or not.
 */
export function lacpMissing(p: OvsPortSpec): string | undefined {
  if (p.type !== "bond" || p.bond_mode !== "balance-tcp" || (p.lacp ?? "off") !== "off") return undefined;
  return `port ${p.name}: bond_mode balance-tcp needs LACP (lacp: active or passive, and a switch that runs LACP on those ports); without it Open vSwitch sends and admits no frame on the bond, cutting the host off every network behind it. Nothing was changed`;
}

/** Interfaces whose device did not take the MTU asked of it (a NIC that cannot do jumbo frames). */
function mtuRefused(state: OvsState, names: string[], mtu: number | undefined): string[] {
  if (mtu === undefined) return [];
  return names.filter((n) => {
    const i = state.interfaces.get(n);
    return i?.mtuRequest === mtu && i.mtu !== undefined && i.mtu !== mtu;
  }).map((n) => `${n} (MTU ${state.interfaces.get(n)!.mtu}, asked ${mtu})`);
}

/**
 * An OVS bridge and the ports netfleet puts on it, converged in one
 * `ovs-vsctl` transaction. Ports we did not create (libvirt's vnetN, the
 * bridge's own local port, anything an operator added) are never touched.
 */
export const ovsBridge: ResourceHandler<OvsBridgeSpec, OvsState> = {
  kind: "ovs-bridge",
  observe(_spec, ctx) {
    return observeOvs(ctx);
  },
  absent: emptyOvsState,
  // An internal port's address is read from Interface.mac_in_use, which ovs-vswitchd fills in its own
  // status transaction after it set the device's address; right after a create or a `set mac`, the
  // read-back can still see the kernel's random address (seen in the lab: "still differs after apply:
  // port gw-secure mac"). Reading mac_in_use, not the mac column, is what catches an address changed
  // under OVS with `ip link set address`.
  settleMs: 2_000,
  // The bridge, the ports it asks for (wherever they are) and the marked ports on it, with their interfaces:
  // a VM's tap plugged into the bridge by libvirt is no change to this plan.
  stable: (state, spec) => {
    const wanted = new Set(spec.ports.map((p) => p.name));
    const bridge = state.bridges.get(spec.name);
    const here = new Set(bridge?.portUuids ?? []);
    const ports = [...state.ports.values()].filter((p) => wanted.has(p.name) || (here.has(p.uuid) && p.externalIds[OWNER_KEY] !== undefined));
    const ifaces = new Set(ports.flatMap((p) => p.interfaceUuids));
    const interfaces = [...state.interfaces.values()].filter((i) => ifaces.has(i.uuid) || i.name === spec.name);
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    return { bridge: bridge ? { ...bridge, portUuids: ports.filter((p) => here.has(p.uuid)).map((p) => p.uuid).sort() } : null, ports: ports.sort(byName), interfaces: interfaces.sort(byName) };
  },
  plan(spec, state, ctx): ResourcePlan {
    const unusable = spec.ports.map(lacpMissing).find((m) => m !== undefined);
    if (unusable) return { changes: {}, commands: [], blocked: unusable };
    const changes: Changes = {};
    const args: string[] = [];
    const owner = ctx.owner;
    const bridge = state.bridges.get(spec.name);
    if (bridge && !isOurs(bridge.externalIds, owner)) {
      return {
        changes: {},
        commands: [],
        blocked: `bridge ${spec.name} exists and is not managed by netfleet; to hand it over run: ovs-vsctl set Bridge ${spec.name} external_ids:${OWNER_KEY}=${owner}`,
      };
    }
    if (!bridge) {
      changes.present = { old: false, new: true };
      // fail_mode in the creating transaction: the bridge never forwards a frame its table does not allow.
      args.push("--", "add-br", spec.name, "--", "set", "Bridge", spec.name, `datapath_type=${spec.datapath}`, ...(spec.failMode ? [`fail_mode=${spec.failMode}`] : []), `external_ids:${OWNER_KEY}=${owner}`);
      if (spec.mtu !== undefined) args.push("--", "set", "Interface", spec.name, `mtu_request=${spec.mtu}`);
    } else {
      if (bridge.datapath !== spec.datapath) {
        changes.datapath = { old: bridge.datapath, new: spec.datapath };
        args.push("--", "set", "Bridge", spec.name, `datapath_type=${spec.datapath}`);
      }
      if (spec.failMode !== undefined && (bridge.failMode ?? "standalone") !== spec.failMode) {
        changes.fail_mode = { old: bridge.failMode ?? null, new: spec.failMode };
        args.push("--", "set", "Bridge", spec.name, `fail_mode=${spec.failMode}`);
      }
      // The bridge's own internal port (same name as the bridge).
      const local = state.interfaces.get(spec.name)?.mtuRequest;
      if (spec.mtu !== undefined && local !== spec.mtu) {
        changes.mtu = { old: local ?? null, new: spec.mtu };
        args.push("--", "set", "Interface", spec.name, `mtu_request=${spec.mtu}`);
      }
    }

    const wanted = new Set(spec.ports.map((p) => p.name));
    for (const want of spec.ports) {
      const have = state.ports.get(want.name);
      if (!have) {
        changes[`port ${want.name}`] = { old: null, new: describePort(want) };
        args.push(...addPortArgs(spec.name, want, owner));
        continue;
      }
      if (have.bridge !== spec.name || !isOurs(have.externalIds, owner)) {
        if (have.bridge !== spec.name && !isOurs(have.externalIds, owner) && have.bridge !== undefined) {
          return {
            changes: {},
            commands: [],
            blocked: `port ${want.name} is on bridge ${have.bridge} and is not managed by netfleet; refusing to move it`,
          };
        }
      }
      const drift = portDrift(state, want, have);
      const needsRebuild = drift.members || drift.type || have.bridge !== spec.name;
      if (needsRebuild) {
        changes[`port ${want.name}`] = { old: { bridge: have.bridge, ...oldValues(drift) }, new: describePort(want) };
        args.push("--", "--if-exists", "del-port", want.name, ...addPortArgs(spec.name, want, owner));
        continue;
      }
      if (Object.keys(drift).length > 0) {
        for (const [k, v] of Object.entries(drift)) changes[`port ${want.name} ${k}`] = v;
        const set: string[] = [];
        if (drift.tag) want.tag === undefined ? args.push("--", "clear", "Port", want.name, "tag") : set.push(`tag=${want.tag}`);
        if (drift.trunks) (want.trunks ?? []).length === 0 ? args.push("--", "clear", "Port", want.name, "trunks") : set.push(`trunks=${[...want.trunks!].sort((a, b) => a - b).join(",")}`);
        if (drift.bond_mode && want.bond_mode) set.push(`bond_mode=${want.bond_mode}`);
        if (drift.lacp) want.lacp === undefined ? args.push("--", "clear", "Port", want.name, "lacp") : set.push(`lacp=${want.lacp}`);
        if (set.length > 0) args.push("--", "set", "Port", want.name, ...set);
        if (drift.peer) args.push("--", "set", "Interface", want.name, `options:peer=${want.peer}`);
        if (drift.mac) args.push("--", "set", "Interface", want.name, `mac="${want.mac}"`);
        if (drift.mtu) for (const name of Object.keys(drift.mtu.old as object)) args.push("--", "set", "Interface", name, `mtu_request=${want.mtu}`);
      }
      if (!isOurs(have.externalIds, owner)) {
        changes[`port ${want.name} owner`] = { old: have.externalIds[OWNER_KEY] ?? null, new: owner };
        args.push("--", "set", "Port", want.name, `external_ids:${OWNER_KEY}=${owner}`);
      }
    }
    if (bridge) {
      for (const uuid of bridge.portUuids) {
        const port = [...state.ports.values()].find((p) => p.uuid === uuid);
        if (!port || wanted.has(port.name) || !isOurs(port.externalIds, owner)) continue;
        changes[`port ${port.name}`] = { old: "present", new: null };
        args.push("--", "del-port", spec.name, port.name);
      }
    }
    const commands: Command[] = args.length > 0 ? [mutate(ctx.tools.ovsVsctl(...args))] : [];
    if (commands.length === 0) {
      // Asked for, but the device has another MTU: asking again would not help; say so.
      const refused = [
        ...mtuRefused(state, [spec.name], spec.mtu),
        ...spec.ports.flatMap((p) => mtuRefused(state, mtuInterfaces(p), p.mtu)),
      ];
      if (refused.length > 0) return { changes, commands, comment: `in desired state, but not at the MTU asked: ${refused.join(", ")}` };
    }
    return { changes, commands };
  },
};

function describePort(p: OvsPortSpec): string {
  const bits: string[] = [p.type];
  if (p.tag !== undefined) bits.push(`tag=${p.tag}`);
  if (p.trunks?.length) bits.push(`trunks=${p.trunks.join(",")}`);
  if (p.peer) bits.push(`peer=${p.peer}`);
  if (p.members?.length) bits.push(`members=${p.members.join(",")}`);
  if (p.bond_mode) bits.push(`bond_mode=${p.bond_mode}`);
  if (p.lacp) bits.push(`lacp=${p.lacp}`);
  if (p.mtu !== undefined) bits.push(`mtu=${p.mtu}`);
  return bits.join(" ");
}

function oldValues(changes: Changes): Record<string, unknown> {
  return Object.fromEntries(Object.entries(changes).map(([k, v]) => [k, v.old]));
}
