import { quoteToken } from "../errors.ts";
import { bridgeName, gatewayPortName, hypervisorName, iproute2Keyword, patchPortNames, vlanInterfaceName } from "../names.ts";
import { vxlanInterfaceName } from "../vxlan.ts";
import type { Located, Ref, Reporter } from "./report.ts";
import type { Host } from "./model.ts";
import type { NetworkSpec } from "./schema.ts";

/**
 * Interface names a user writes (uplink `bond`, `members`, `trunk_bridge`,
 * a backend's `external_interface(s)`) against two kinds of names they may
 * not take:
 *
 * - iproute2 keywords (see `IPROUTE2_KEYWORDS` in names.ts, from
 *   ip/iplink.c and ip/ipaddress.c): a name in an option's place of
 *   `ip link add <name> type bond` is read as that option, and iproute2
 *   takes any prefix of a keyword as the keyword (`h` is `help`).
 * - names libvirt, OVS and the bonding driver give what they create at
 *   run time (`HYPERVISOR_NAMES` in names.ts: vnet<N>, macvtap<N>,
 *   virbr<N>, virbr<N>-nic, ovs-netdev, bonding_masters).
 * - names netfleet itself creates (compile.ts), reserved on every host for
 *   every network of the site (see `reservedNames`): `br-<network>`
 *   (a network's OVS bridge), `pu-`/`pb-<network>` (the patch pair of an
 *   ovs-trunk host), `gw-<network>` (the backend's gateway port in
 *   ovs-trunk mode), `<bond>.<vid>` (kernel mode VLAN interfaces), the
 *   trunk bridge, and the kernel's own `ovs-system` (the OVS datapath,
 *   ovs-vswitchd(8)) and `lo`. Two things under one name means one of them
 *   is silently the other: a second `br-uplink`, NAT on our own VLAN
 *   interface that never matches.
 */
export function checkInterfaceNames(r: Reporter, networks: Located<NetworkSpec>[], hosts: Located<Host>[]): void {
  const vlanOf = new Map(networks.map((n) => [n.name, n.value.vlan]));
  for (const host of hosts) checkHost(r, host, vlanOf);
  checkTrunkBridgeNetworks(r, networks, hosts);
}

interface UserName {
  name: string;
  ref: Ref;
  /** What it is, for messages: `bond`, `member`, `trunk bridge`, `external interface`. */
  what: string;
  /** Whether the user wrote it (a default is never a keyword and is not reported as written). */
  written: boolean;
  /** Written but not created (the bond of a single-member ovs-trunk uplink, a kernel host's trunk_bridge): only the keyword rule applies. */
  inert: boolean;
}

const EXAMPLE: Record<string, string> = { bond: "bond1", "bond member": "eth1", "trunk bridge": "br-trunk", "external interface": "wan0" };

const TRUNK_BRIDGE = "the trunk bridge (uplink.trunk_bridge)";

/**
 * The names netfleet reserves on one host, each with what it is for: the
 * bridge, patch ports and gateway port of every network of the site and
 * the host's `<bond>.<vid>` for each of their VLANs (whether or not the
 * host carries the network or runs the mode that creates them today: a
 * network added to the host or a mode change must not meet a user's
 * interface under that name), the vx-<network> device of uplink mode vxlan,
 * its trunk bridge, `lo` and `ovs-system`.
 */
export function reservedNames(host: Host, vlanOf: Map<string, number>): Map<string, string> {
  const up = host.uplink;
  const out = new Map<string, string>([
    ["lo", "the loopback interface"],
    ["ovs-system", "the interface of the OVS kernel datapath"],
    [up.trunk_bridge, TRUNK_BRIDGE],
  ]);
  for (const [n, vlan] of [...vlanOf].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const p = patchPortNames(n);
    out.set(bridgeName(n), `the bridge of network ${n}`);
    out.set(p.uplink, `the trunk-side patch port of network ${n}`);
    out.set(p.bridge, `the bridge-side patch port of network ${n}`);
    out.set(gatewayPortName(n), `the gateway port of network ${n}`);
    out.set(vlanInterfaceName(up.bond, vlan), `the VLAN ${vlan} interface of network ${n} on bond ${up.bond}`);
    out.set(vxlanInterfaceName(n), `the VXLAN interface of network ${n} (uplink mode vxlan)`);
  }
  return out;
}

function userNames(host: Located<Host>): UserName[] {
  const h = host.value;
  const up = h.uplink;
  const origin = host.origin ?? new Map<string, Ref>();
  const fallback = origin.get("uplink") ?? host.ref;
  const out: UserName[] = [];
  const bondUsed = up.mode === "kernel" || up.members.length >= 2;
  if (bondUsed || origin.has("uplink.bond")) out.push({ name: up.bond, ref: origin.get("uplink.bond") ?? fallback, what: "bond", written: origin.has("uplink.bond"), inert: !bondUsed });
  const membersAt = origin.get("uplink.members");
  up.members.forEach((m, i) => out.push({ name: m, ref: membersAt ? { file: membersAt.file, path: [...membersAt.path, i] } : fallback, what: "bond member", written: true, inert: false }));
  if (up.mode === "ovs-trunk" || origin.has("uplink.trunk_bridge")) {
    out.push({ name: up.trunk_bridge, ref: origin.get("uplink.trunk_bridge") ?? fallback, what: "trunk bridge", written: origin.has("uplink.trunk_bridge"), inert: up.mode !== "ovs-trunk" });
  }
  if (up.mode === "vxlan" && up.underlay !== undefined) out.push({ name: up.underlay, ref: origin.get("uplink.underlay") ?? fallback, what: "underlay interface", written: true, inert: false });
  if (h.role !== "backend") return out; // a vmhost's external_interface is refused as such
  const single = origin.get("external_interface");
  const list = origin.get("external_interfaces");
  if (list) (h.external_interfaces ?? []).forEach((x, i) => out.push({ name: x, ref: { file: list.file, path: [...list.path, i] }, what: "external interface", written: true, inert: false }));
  else if (single && h.external_interface !== undefined) out.push({ name: h.external_interface, ref: single, what: "external interface", written: true, inert: false });
  return out;
}

function checkHost(r: Reporter, host: Located<Host>, vlanOf: Map<string, number>): void {
  const h = host.value;
  const up = h.uplink;
  const names = userNames(host);
  const generated = reservedNames(h, vlanOf);
  for (const u of names) {
    if (!u.inert && (u.name === "lo" || u.name === "ovs-system") && u.what !== "trunk bridge") {
      r.report(u.ref, `${u.what} ${quoteToken(u.name)} is ${generated.get(u.name)}, which every host has: ${u.what === "external interface" ? "give the host's real outside interface" : `rename the ${u.what}`}`);
      continue;
    }
    const keyword = u.written ? iproute2Keyword(u.name) : undefined;
    if (keyword !== undefined) {
      const how = keyword === u.name ? `is the iproute2 keyword ${quoteToken(keyword)}` : `is a prefix of the iproute2 keyword ${quoteToken(keyword)}, and iproute2 takes any prefix of a keyword as the keyword`;
      r.report(u.ref, `${u.what} name ${quoteToken(u.name)} ${how}: ip link and ip addr would read it as that option, not as a name; choose another name (e.g. ${EXAMPLE[u.what] ?? "eth1"})`);
      continue;
    }
    if (u.inert) continue;
    const hv = hypervisorName(u.name);
    if (hv) {
      const fix = u.what === "external interface" ? "give the host's real outside interface" : u.what === "trunk bridge" ? "set uplink.trunk_bridge to another name (default br-uplink)" : `rename the ${u.what} (e.g. ${EXAMPLE[u.what] ?? "eth1"})`;
      r.report(u.ref, `${u.what} ${quoteToken(u.name)} is ${hv.example === u.name ? "" : `of the form ${hv.example}, `}the name of ${hv.what}: netfleet would act on that device (or claim its name), not on the host's own interface; ${fix}`);
      continue;
    }
    if (u.what === "trunk bridge") {
      const clash = names.find((o) => o !== u && !o.inert && o.what !== "trunk bridge" && o.name === u.name);
      if (clash) {
        r.report(u.ref, `trunk bridge ${quoteToken(u.name)} has the name of the ${clash.what} at ${r.where(clash.ref)}; an OVS bridge and the port it holds need different names: set uplink.trunk_bridge to another name (default br-uplink)`);
        continue;
      }
      const gen = generated.get(u.name);
      // br-<network> against the trunk bridge is reported at the network (checkTrunkBridgeNetworks).
      if (gen !== undefined && gen !== TRUNK_BRIDGE && ![...vlanOf.keys()].some((n) => bridgeName(n) === u.name)) {
        r.report(u.ref, `trunk bridge ${quoteToken(u.name)} is the name netfleet reserves for ${gen}; set uplink.trunk_bridge to another name (default br-uplink)`);
      }
      continue;
    }
    if (u.what === "external interface" && (up.members.includes(u.name) || u.name === up.bond)) {
      continue; // reported by checkExternalInterfaces (part of the uplink)
    }
    const gen = generated.get(u.name);
    // In ovs-trunk mode the trunk bridge against the bond, a member or an external interface is reported at trunk_bridge.
    if (gen === undefined || (gen === TRUNK_BRIDGE && up.mode === "ovs-trunk")) continue;
    if (u.what === "bond member" && u.name === up.bond) continue; // reported by checkUplink
    const fix = u.what === "external interface"
      ? "NAT and port-forwards on it would act on netfleet's own interface, not on the way out; give the host's real outside interface"
      : `rename the ${u.what}`;
    r.report(u.ref, `${u.what} ${quoteToken(u.name)} is the name netfleet reserves for ${gen}${gen === TRUNK_BRIDGE ? ` of host ${h.name}` : ""}: ${fix}`);
  }
}

/**
 * A network whose bridge `br-<name>` is the trunk bridge of an ovs-trunk
 * host (network `uplink` and the default `br-uplink`): a host carrying it
 * (the backend carries every network) would hold both in one bridge.
 * Reported at the network's name, naming the hosts.
 */
function checkTrunkBridgeNetworks(r: Reporter, networks: Located<NetworkSpec>[], hosts: Located<Host>[]): void {
  for (const { name, ref } of networks) {
    const bridge = bridgeName(name);
    const clashes = hosts.filter((h) => h.value.uplink.mode === "ovs-trunk" && h.value.uplink.trunk_bridge === bridge);
    if (clashes.length === 0) continue;
    const which = clashes.map((h) => {
      const at = h.origin?.get("uplink.trunk_bridge");
      return `${h.name} (${at ? `trunk_bridge at ${r.where(at)}` : "the default trunk_bridge"})`;
    });
    r.report(
      ref,
      `network ${name}'s bridge ${bridge} is the trunk bridge of ovs-trunk host${clashes.length > 1 ? "s" : ""} ${which.join(", ")}: a host carrying the network would hold it and its trunk in one bridge; rename the network or set uplink.trunk_bridge on ${clashes.length > 1 ? "those hosts" : "that host"} to another name`,
      { key: true },
    );
  }
}
