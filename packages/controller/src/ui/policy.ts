import { effectivePolicy, type AllowEntry, type EffectivePolicy, type Inventory, type PortForward, type PortRangeForward, type ProtoPorts } from "@netfleet/shared";

/** A port-range forward as it reaches this VM: the backend port that maps onto `address:port`. */
export interface RangeForwardToVm extends PortRangeForward {
  /** The backend port for this VM's address (listen + (address - network address)), when the VM has a static address. */
  backendPort?: number;
}

/** One NIC of a VM with the policy the gateway and its host enforce for it, as the dashboard shows it. */
export interface VmNicPolicy {
  network: string;
  vlan: number;
  cidr: string;
  mac: string;
  ip: string | null;
  host: string | null;
  /** Isolated from the other VMs of its network (OpenFlow on its host). */
  isolated: boolean;
  /** Cluster groups it is in (members may reach each other even when isolated). */
  groups: string[];
  /** The network's egress (open, or allowlist: only `allow` and the site's services). */
  egress: "open" | "allowlist";
  /** Destinations it may reach beyond the gateway (allowlist egress). */
  allow: AllowEntry[];
  extraAddresses: string[];
  /** The gateway's own services the network's VMs may reach. */
  gatewayServices: ProtoPorts[];
  /** Port-forwards on the backend that land on this VM. */
  forwards: PortForward[];
  rangeForwards: RangeForwardToVm[];
  /** Whether the gateway audits this network (its lines are then in `netfleet audit`). */
  audit: boolean;
  /**
   * Each policy key's value and where it came from (the VM, a profile, the
   * network's default profile, the network, the default): shared
   * inventory/effective-policy.ts, as `netfleet plan` shows it.
   */
  effective: EffectivePolicy | null;
}

/** IPv4 dotted quad → 32-bit number. */
function ipv4Number(a: string): number {
  return a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

/**
 * A VM's policy on each network it has a NIC in, from the loaded
 * inventory (pure), with the effective policy's provenance per key.
 * Empty when the inventory has no VM of that name.
 */
export function vmPolicy(inventory: Inventory, vm: string): VmNicPolicy[] {
  const out: VmNicPolicy[] = [];
  for (const n of inventory.networks) {
    for (const v of n.vms) {
      if (v.name !== vm) continue;
      const base = ipv4Number(n.cidr.split("/")[0]!);
      out.push({
        network: n.name,
        vlan: n.vlan,
        cidr: n.cidr,
        mac: v.mac,
        ip: v.ip ?? null,
        host: v.host ?? null,
        isolated: v.isolated,
        groups: v.groups,
        egress: n.egress,
        allow: v.allow,
        extraAddresses: v.extra_addresses,
        gatewayServices: n.gateway_services,
        forwards: n.port_forwards.filter((f) => f.vm === vm),
        rangeForwards: n.port_ranges.map((r) => (v.ip ? { ...r, backendPort: r.listen + (ipv4Number(v.ip) - base) } : { ...r })),
        audit: n.audit,
        effective: effectivePolicy(inventory, n.name, vm) ?? null,
      });
    }
  }
  return out;
}

/** The inventory's VMs for the dashboard's list: name, network, host, address, once per NIC, sorted by name then network. */
export function vmList(inventory: Inventory): { name: string; network: string; host: string | null; ip: string | null; mac: string }[] {
  return inventory.networks
    .flatMap((n) => n.vms.map((v) => ({ name: v.name, network: n.name, host: v.host ?? null, ip: v.ip ?? null, mac: v.mac })))
    .sort((a, b) => (a.name === b.name ? a.network.localeCompare(b.network) : a.name.localeCompare(b.name)));
}
