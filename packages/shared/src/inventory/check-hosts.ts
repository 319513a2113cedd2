import { quoteToken } from "../errors.ts";
import { IFNAME_MAX, vlanInterfaceName } from "../names.ts";
import type { Located, Ref, Reporter } from "./report.ts";
import type { Host } from "./model.ts";
import type { NetworkSpec, UplinkSpec } from "./schema.ts";

/**
 * Per-host checks of the merged settings (groups, then the host): the
 * uplink and the backend's external interfaces. `origin` says where each
 * merged setting was written (`uplink.members`, `external_interfaces`, ...).
 */

/** Bond members, VLAN interface name length (IFNAMSIZ), bond modes per uplink mode. */
export function checkUplink(r: Reporter, up: UplinkSpec, origin: Map<string, Ref>, vlans: (number | undefined)[]): void {
  const memberSeen = new Set<string>();
  up.members.forEach((m, i) => {
    const at = origin.get("uplink.members")!;
    if (memberSeen.has(m)) r.report(r.at(at, i), `member ${m} is listed twice`);
    memberSeen.add(m);
    if (m === up.bond) r.report(r.at(at, i), `member ${m} has the same name as the bond`);
  });
  if (up.mode === "kernel") {
    for (const vlan of vlans) {
      if (vlan === undefined) continue;
      const ifname = vlanInterfaceName(up.bond, vlan);
      if (Buffer.byteLength(ifname) > IFNAME_MAX) {
        r.report(origin.get("uplink.bond") ?? origin.get("uplink")!, `VLAN interface ${ifname} would exceed ${IFNAME_MAX} bytes; use a shorter bond name`);
        break;
      }
    }
    const ovsOnly = ["balance-slb", "balance-tcp"];
    if (ovsOnly.includes(up.bond_mode)) r.report(origin.get("uplink.bond_mode")!, `bond_mode ${up.bond_mode} exists only in ovs-trunk mode`);
  } else if (!["active-backup", "balance-slb", "balance-tcp"].includes(up.bond_mode)) {
    r.report(origin.get("uplink.bond_mode") ?? origin.get("uplink.mode")!, `ovs-trunk bonds support active-backup, balance-slb or balance-tcp, not ${up.bond_mode}`);
  }
}

/** backend: external_interface or external_interfaces (one of them), no duplicate, none of the uplink's. */
export function checkExternalInterfaces(
  r: Reporter,
  { name, ref, merged, origin, up }: { name: string; ref: Ref; merged: Record<string, unknown>; origin: Map<string, Ref>; up: UplinkSpec },
): void {
  if (merged.external_interface === undefined && merged.external_interfaces === undefined) {
    r.report(ref, `backend ${name} needs external_interface (its way to the internet, for NAT and port-forwards)`, { key: true });
  } else if (merged.external_interface !== undefined && merged.external_interfaces !== undefined) {
    r.report(origin.get("external_interfaces")!, `give external_interface (${r.where(origin.get("external_interface")!)}) or external_interfaces, not both`, { key: true });
  }
  const single = merged.external_interface as string | undefined;
  if (single !== undefined && (up.members.includes(single) || single === up.bond)) r.report(origin.get("external_interface")!, partOfUplink(single, up));
  const list = merged.external_interfaces as string[] | undefined;
  list?.forEach((x, i) => {
    if (list.indexOf(x) !== i) r.report(r.at(origin.get("external_interfaces")!, i), `external interface ${x} is listed twice`);
    if (up.members.includes(x) || x === up.bond) r.report(r.at(origin.get("external_interfaces")!, i), partOfUplink(x, up));
  });
}

function partOfUplink(name: string, up: UplinkSpec): string {
  const role = name === up.bond ? "its bond" : `a member of bond ${up.bond}`;
  return `${name} is part of the uplink (${role}), not an external interface: NAT and port-forwards belong on the interface that leads out of the site, outside the uplink`;
}

/** A VM's `host` names a vmhost of this site that carries the VM's network. */
export function checkVmPlacement(r: Reporter, networks: Located<NetworkSpec>[], hosts: Located<Host>[], defined: Set<string>): void {
  const byName = new Map(hosts.map((h) => [h.name, h.value]));
  for (const { name, value: net, ref } of networks) {
    for (const [vmName, vm] of Object.entries(net.vms)) {
      if (vm.host === undefined) continue;
      const at = r.at(ref, "vms", vmName, "host");
      const host = byName.get(vm.host);
      if (!host && defined.has(vm.host)) continue; // its own problems are reported already
      if (!host) r.report(at, `no host ${quoteToken(vm.host)} in this site`);
      else if (host.role !== "vmhost") r.report(at, `${vm.host} is a ${host.role}, not a vmhost`);
      else if (!host.networks.includes(name)) r.report(at, `host ${vm.host} does not carry network ${name}`);
    }
  }
}
