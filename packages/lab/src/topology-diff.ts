/**
 * What a site folder would change in a built lab's topology: the parts a
 * rollout cannot make (hosts, VMs, networks, their addresses and MACs), each
 * named, so `netfleet-lab rollout` can say why a site needs the lab rebuilt.
 */
import type { Topology, TopoHost, TopoNetwork, TopoVm } from "./topology.ts";

/** The fields of a VM that the lab builds (not its services, which `rollout` restarts). */
const VM_FIELDS = ["host", "network", "mac", "ip", "gateway"] as const;
const NETWORK_FIELDS = ["vlan", "cidr", "gateway"] as const;

/**
 * The differences between the lab as built (`built`) and the topology of
 * another site folder (`next`), one phrase each, e.g. `VM vma1: ip 10.81.0.11
 * → 10.81.0.12`, `host hostc added`, `network lab: vlan 1081 → 1090`. Empty
 * when their fingerprints agree. Anything else of the topology that differs
 * (site name, controller address, uplinks, the VMs' order of hosts) is
 * named by its part (`controller`, `host hosta`). Pure.
 */
export function topologyChanges(built: Topology, next: Topology): string[] {
  if (built.fingerprint === next.fingerprint) return [];
  const out: string[] = [];
  byName("host", built.hosts, next.hosts, out, (a, b) => (same(a, b) ? [] : [hostChange(a, b)]));
  byName("network", built.networks, next.networks, out, (a, b) => fieldChanges(a, b, NETWORK_FIELDS));
  byName("VM", built.vms, next.vms, out, (a, b) => fieldChanges(a, b, VM_FIELDS));
  for (const key of ["site", "controller", "trunks", "inet", "domains", "strangers"] as const) {
    if (!same(built[key], next[key])) out.push(`${key === "site" ? "site name" : key} ${key === "site" ? `${built.site} → ${next.site}` : "changed"}`);
  }
  return out.length > 0 ? out : ["the lab's layout changed"];
}

/** Entries added, removed or changed between two lists keyed by `name`, pushed onto `out` as phrases. */
function byName<T extends { name: string }>(what: string, a: readonly T[], b: readonly T[], out: string[], change: (x: T, y: T) => string[]): void {
  const before = new Map(a.map((x) => [x.name, x]));
  const after = new Map(b.map((x) => [x.name, x]));
  for (const [name, x] of before) {
    const y = after.get(name);
    if (!y) out.push(`${what} ${name} removed`);
    else for (const c of change(x, y)) out.push(`${what} ${name}: ${c}`);
  }
  for (const name of after.keys()) if (!before.has(name)) out.push(`${what} ${name} added`);
}

/** `field old → new` for each named field that differs (`-` for absent). */
function fieldChanges<T extends TopoVm | TopoNetwork>(a: T, b: T, fields: readonly (keyof T & string)[]): string[] {
  const shown = (v: unknown) => (v === undefined ? "-" : String(v));
  return fields.filter((f) => a[f] !== b[f]).map((f) => `${f} ${shown(a[f])} → ${shown(b[f])}`);
}

/** What changed on a host that is in both: its role, management address, or else its links and uplink. */
function hostChange(a: TopoHost, b: TopoHost): string {
  if (a.role !== b.role) return `role ${a.role} → ${b.role}`;
  if (a.mgmtAddress !== b.mgmtAddress) return `address ${a.mgmtAddress ?? "-"} → ${b.mgmtAddress ?? "-"}`;
  return "links or uplink changed";
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
