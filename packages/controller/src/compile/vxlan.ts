import { VXLAN_UDP_PORT, vlanInterfaceName, vxlanInterfaceName, type Host, type Inventory, type Network, type ResourceSpec, type UplinkSpec } from "@netfleet/shared";

/**
 * The uplink of a host in `mode: vxlan`: one Linux VXLAN device per network
 * it carries (`vx-<network>`, VNI = the network's vni), sourced from the
 * host's underlay address and flooding to every other host that carries
 * the network (the backend carries them all). VMs on two VM hosts reach
 * each other directly, not through the backend: the same paths as on a
 * VLAN trunk. The devices learn nothing (agent: `nolearning`): each MAC of
 * the network held by another host (its VMs; the gateway, whose MAC
 * `gatewayMac` gives, on the backend) is a static entry to that host's
 * underlay address (vxlanMacs). Pure.
 */
export function vxlanUplink(inventory: Inventory, host: Host, networks: Network[], gatewayMac?: (n: Network) => string): { resources: ResourceSpec[]; links: string[]; bridges: string[] } {
  const resources: ResourceSpec[] = networks.map((n) => ({
    kind: "vxlan-interface",
    name: vxlanInterfaceName(n.name),
    vni: n.vni,
    local: underlayAddress(host),
    ...(host.uplink.underlay !== undefined ? { underlay: host.uplink.underlay } : {}),
    port: VXLAN_UDP_PORT,
    remotes: inventory.hosts
      .filter((h) => h.name !== host.name && (h.role === "backend" || h.networks.includes(n.name)))
      .map(underlayAddress)
      .sort(byAddress),
    ...macsField(vxlanMacs(inventory, host, n, gatewayMac)),
    mtu: n.mtu,
  }));
  return { resources, links: networks.map((n) => vxlanInterfaceName(n.name)), bridges: [] };
}

/**
 * The static unicast entries of host `host`'s device for network `n`: each
 * VM of `n` placed on another host, to that host's underlay address, and
 * (on a VM host, when `gatewayMac` is given) the gateway's MAC to the
 * backend's; sorted by MAC, lower case as bridge(8) prints them.
 */
export function vxlanMacs(inventory: Inventory, host: Host, n: Network, gatewayMac?: (n: Network) => string): { mac: string; dst: string }[] {
  const hosts = new Map(inventory.hosts.map((h) => [h.name, h]));
  const out = n.vms.flatMap((vm) => {
    const at = vm.host === undefined ? undefined : hosts.get(vm.host);
    return at === undefined || at.name === host.name ? [] : [{ mac: vm.mac.toLowerCase(), dst: underlayAddress(at) }];
  });
  const backend = inventory.hosts.find((h) => h.role === "backend");
  if (gatewayMac !== undefined && backend !== undefined && backend.name !== host.name) out.push({ mac: gatewayMac(n).toLowerCase(), dst: underlayAddress(backend) });
  return out.sort((a, b) => a.mac.localeCompare(b.mac));
}

/** `{ macs }` when there are any, else nothing (the field is optional on the wire, protocol 1.4). */
function macsField(macs: { mac: string; dst: string }[]): { macs?: { mac: string; dst: string }[] } {
  return macs.length > 0 ? { macs } : {};
}

/**
 * The kernel link that carries network `n` on a host: `vx-<network>` in
 * vxlan mode, `<bond>.<vlan>` in kernel mode (ovs-trunk hosts use patch
 * ports instead and do not ask).
 */
export function networkLink(up: UplinkSpec, n: Network): string {
  return up.mode === "vxlan" ? vxlanInterfaceName(n.name) : vlanInterfaceName(up.bond, n.vlan);
}

/** A vxlan host's address on the underlay: `uplink.underlay_address`, else its management address (the loader requires one). */
export function underlayAddress(h: Host): string {
  return h.uplink.underlay_address ?? h.address ?? "";
}

function byAddress(a: string, b: string): number {
  const n = (s: string) => s.split(".").reduce((v, o) => v * 256 + Number(o), 0);
  return n(a) - n(b);
}
