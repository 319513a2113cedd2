import ipaddr from "ipaddr.js";
import { VXLAN_IPV4_OVERHEAD } from "../vxlan.ts";
import type { Host } from "./model.ts";
import type { Located, Ref, Reporter } from "./report.ts";
import type { NetworkSpec } from "./schema.ts";

/**
 * Site checks of the VXLAN overlay (uplink `mode: vxlan`, network `vni`),
 * run on resolved hosts; every problem points where the value was written.
 *
 * - VNIs are unique in the site: two networks on one VXLAN segment would be
 *   one broadcast domain (RFC 7348 §5: the VNI scopes the inner MAC frame).
 * - vxlan mode is site-wide: a network carried over VLANs on one host and
 *   over VXLAN on another would be two segments that nothing joins.
 * - A vxlan host has an underlay address (its `address` or
 *   `underlay_address`), unique in the site, and none of the bond keys
 *   (members, bond_mode, lacp, carries_management, trunk_bridge).
 * - underlay keys only in vxlan mode.
 * The MTU (network + 50 bytes within the underlay mtu) is check-mtu.ts's,
 * through `carriedMtu`.
 */
export function checkVxlan(r: Reporter, networks: Located<NetworkSpec>[], hosts: Located<Host>[]): void {
  checkVnis(r, networks);
  checkVxlanHosts(r, hosts);
  checkUnderlayAddresses(r, networks, hosts);
}

/** ipaddr.js ranges an underlay address (a VTEP, RFC 7348) cannot be: nothing routes unicast UDP to them. */
const NOT_A_VTEP = new Set(["unspecified", "broadcast", "multicast", "linkLocal", "loopback", "reserved"]);

/**
 * A written `underlay_address` is a unicast address outside every VM
 * network: inside one, the other hosts' VXLAN packets for every network
 * would be routed into that network, to whichever VM holds the address.
 */
function checkUnderlayAddresses(r: Reporter, networks: Located<NetworkSpec>[], hosts: Located<Host>[]): void {
  for (const h of hosts) {
    const up = h.value.uplink;
    const at = h.origin?.get("uplink.underlay_address");
    if (up.mode !== "vxlan" || up.underlay_address === undefined || !at || !ipaddr.IPv4.isValidFourPartDecimal(up.underlay_address)) continue;
    const address = ipaddr.IPv4.parse(up.underlay_address);
    const range = address.range();
    if (NOT_A_VTEP.has(range)) {
      r.report(at, `underlay_address ${up.underlay_address} is a ${range} address: the other hosts send this host's VXLAN packets to it, so it must be a unicast address of the host on the underlay`);
      continue;
    }
    for (const n of networks) {
      const cidr = n.value.cidr;
      if (!ipaddr.isValidCIDR(cidr)) continue;
      const [base, len] = ipaddr.IPv4.parseCIDR(cidr);
      if (address.match(base, len)) {
        r.report(at, `underlay_address ${up.underlay_address} is inside network ${n.name} (${cidr}): the VXLAN packets of every network would be routed into that network, to whichever VM holds the address; use an address of the management network or another underlay`);
        break;
      }
    }
  }
}

/** Each network's VNI (its `vni`, else its vlan id) is unique; a clash is reported at the `vni` written. */
function checkVnis(r: Reporter, networks: Located<NetworkSpec>[]): void {
  const seen = new Map<number, { name: string; at: Ref; explicit: boolean }>();
  for (const { name, value: net, ref } of networks) {
    if (typeof net.vlan !== "number") continue;
    const explicit = net.vni !== undefined;
    const vni = net.vni ?? net.vlan;
    const at = r.at(ref, explicit ? "vni" : "vlan");
    const first = seen.get(vni);
    if (!first) {
      seen.set(vni, { name, at, explicit });
      continue;
    }
    // Two defaults are two equal VLAN ids, reported as such by resolveNetworks.
    if (!explicit && !first.explicit) continue;
    const firstSays = first.explicit ? `vni ${vni}` : `vni ${vni} (its vlan id, the default vni)`;
    const here = explicit ? at : first.at;
    const other = explicit ? `network ${first.name}'s ${firstSays} at ${r.where(first.at)}` : `network ${name}'s vni ${vni} (its vlan id, the default vni) at ${r.where(at)}`;
    r.report(here, `VNI ${vni} clashes with ${other}: two networks on one VXLAN segment would be one broadcast domain; give each network its own vni (1-16777215)`);
  }
}

const BOND_KEYS = ["members", "bond_mode", "lacp", "carries_management", "trunk_bridge", "bond", "miimon"] as const;

function checkVxlanHosts(r: Reporter, hosts: Located<Host>[]): void {
  const vxlan = hosts.filter((h) => h.value.uplink.mode === "vxlan");
  const underlays = new Map<string, { host: string; at: Ref }>();
  for (const h of hosts) underlays.set(h.value.address ?? "", { host: h.name, at: h.origin?.get("address") ?? h.ref });
  underlays.delete("");
  for (const h of hosts) {
    const up = h.value.uplink;
    const upAt = (key: string) => h.origin?.get(`uplink.${key}`);
    if (up.mode !== "vxlan") {
      // Optional in the schema for vxlan mode's sake; the bond modes need it.
      if (up.members.length === 0 && !upAt("members")) r.report(h.ref, `uplink.members is required (set it on the host or one of its groups)`, { key: true });
      for (const key of ["underlay", "underlay_address"]) {
        const at = upAt(key);
        if (at) r.report(at, `${key} applies only to uplink mode vxlan; host ${h.name} uses mode ${up.mode}`, { key: true });
      }
      if (vxlan.length > 0) {
        const first = vxlan[0]!;
        r.report(
          upAt("mode") ?? h.ref,
          `host ${h.name} uses uplink mode ${up.mode} while host ${first.name} uses vxlan (${r.where(first.origin?.get("uplink.mode") ?? first.ref)}): a network carried over VLANs on one host and over VXLAN on another is two segments that nothing joins; put every host of the site in mode: vxlan, or none`,
        );
      }
      continue;
    }
    for (const key of BOND_KEYS) {
      const at = upAt(key);
      if (at) r.report(at, `${key} has no use in uplink mode vxlan (host ${h.name}): its networks travel in VXLAN over the underlay, not over a bond; leave ${key} out (set underlay: to name the interface the tunnels leave by)`, { key: true });
    }
    const addrAt = upAt("underlay_address");
    const address = up.underlay_address ?? h.value.address;
    if (address === undefined) {
      r.report(upAt("mode") ?? h.ref, `host ${h.name} in uplink mode vxlan has no underlay address: set address: (the management address, the default underlay) or uplink.underlay_address on host ${h.name} (${r.where(h.ref)})`);
    }
    if (up.underlay_address !== undefined && addrAt) {
      const first = underlays.get(up.underlay_address);
      if (first && first.host !== h.name) r.report(addrAt, `underlay_address ${up.underlay_address} is already used by host ${first.host} at ${r.where(first.at)}: each VXLAN endpoint needs its own address`);
      else underlays.set(up.underlay_address, { host: h.name, at: addrAt });
    }
  }
}

/** Why a network may not exceed a host's carried MTU, as check-mtu.ts says it: a VLAN's reason, or VXLAN's (RFC 7348 §4.3). */
export function mtuReason(up: { mode: string }): string {
  return up.mode === "vxlan" ? "VXLAN endpoints do not fragment (RFC 7348 §4.3): the underlay must carry each frame with the 50 bytes of headers" : "a VLAN cannot be larger than the link under it";
}

/** The message check-mtu.ts adds for a vxlan host: where the 50 bytes go. */
export function vxlanMtuNote(up: { mode: string; mtu: number }): string {
  return up.mode === "vxlan" ? ` (underlay mtu ${up.mtu} less ${VXLAN_IPV4_OVERHEAD} bytes of VXLAN over IPv4, RFC 7348)` : "";
}
