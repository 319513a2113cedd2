import { dnsmasqSpec, firewall } from "./gateway.ts";
import { networkLink, vxlanUplink } from "./vxlan.ts";
import { withMirrors } from "./mirrors.ts";
import { withSampling } from "./sampling.ts";
import { vmBandwidthField } from "./bandwidth.ts";
import {
  bridgeName,
  gatewayPortName,
  patchPortNames,
  sealAssignment,
  uplinkLacp,
  vlanInterfaceName,
  type HostAssignment,
  type Host,
  type Inventory,
  type Network,
  type OvsPortSpec,
  type ResourceSpec,
} from "@netfleet/shared";

export { dnsSetName } from "./gateway.ts";

/**
 * Compiles a validated site into one assignment per host. Pure and
 * deterministic: hosts, networks and ports are taken in sorted order, and
 * the document carries a hash of its canonical JSON.
 */
export function compileSite(inventory: Inventory): HostAssignment[] {
  return inventory.hosts.map((host) => compileHost(inventory, host));
}

/** One host's assignment, as compileSite makes it for each host. */
function compileHost(inventory: Inventory, host: Host): HostAssignment {
  const networks = inventory.networks.filter((n) => host.networks.includes(n.name)).sort((a, b) => a.vlan - b.vlan);
  const backend = inventory.hosts.find((h) => h.role === "backend")?.name;
  const management = managementAddress(inventory, host);
  const resources = withMirrors(inventory, host, withSampling(inventory, host, host.role === "backend" ? backendResources(inventory, host, networks, management) : vmhostResources(host, networks, backend, management, inventory)));
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: inventory.site.name,
    host: host.name,
    role: host.role,
    resources,
  });
}

/** A fixed, locally administered MAC per VLAN for the gateway, so VM hosts can match it in flows. */
export function gatewayMac(vlan: number): string {
  return `02:4e:46:00:${((vlan >> 8) & 0xff).toString(16).padStart(2, "0")}:${(vlan & 0xff).toString(16).padStart(2, "0")}`;
}

/** Cookie of our OpenFlow rules on a network's bridge: "NF" and the VLAN id. */
function flowCookie(vlan: number): string {
  return `0x4e46${vlan.toString(16).padStart(12, "0")}`;
}

/**
 * `address/prefix` of the host's management address when its uplink says
 * `carries_management: true` (kernel mode; the loader requires `address`
 * and the site's `management`), else undefined.
 */
function managementAddress(inventory: Inventory, host: Host): string | undefined {
  if (!host.uplink.carries_management || host.address === undefined || inventory.site.management === undefined) return undefined;
  return `${host.address}/${inventory.site.management.split("/")[1]}`;
}

function uplinkResources(host: Host, networks: Network[], extraTrunkPorts: OvsPortSpec[], management: string | undefined, inventory: Inventory): { resources: ResourceSpec[]; links: string[]; bridges: string[] } {
  const up = host.uplink;
  if (up.mode === "vxlan") return vxlanUplink(inventory, host, networks, (n) => gatewayMac(n.vlan));
  const lacp = uplinkLacp(up);
  if (up.mode === "kernel") {
    const bond: Extract<ResourceSpec, { kind: "kernel-bond" }> = {
      kind: "kernel-bond",
      name: up.bond,
      mode: up.bond_mode as Extract<ResourceSpec, { kind: "kernel-bond" }>["mode"],
      members: up.members,
      miimon: up.miimon,
      mtu: up.mtu,
    };
    if (up.bond_mode === "802.3ad") bond.lacpActive = lacp === "active";
    if (management !== undefined) bond.management = { address: management };
    const resources: ResourceSpec[] = [bond];
    for (const n of networks) {
      // The network's own MTU (at most the bond's, checked by the loader): a 1500 network stays 1500 on a 9000 bond.
      resources.push({ kind: "vlan-interface", name: vlanInterfaceName(up.bond, n.vlan), parent: up.bond, vlan: n.vlan, mtu: n.mtu });
    }
    return { resources, links: [up.bond, ...networks.map((n) => vlanInterfaceName(up.bond, n.vlan))], bridges: [] };
  }
  const trunks = networks.map((n) => n.vlan);
  // The uplink MTU goes on the NICs themselves (mtu_request on each bond member); the
  // trunk bridge's own port follows them (OVS sizes it to its smallest other port).
  const bondPort: OvsPortSpec =
    up.members.length >= 2
      ? { name: up.bond, type: "bond", members: up.members, bond_mode: up.bond_mode as OvsPortSpec["bond_mode"], ...(lacp !== "off" ? { lacp } : {}), trunks, mtu: up.mtu }
      : { name: up.members[0]!, type: "system", trunks, mtu: up.mtu };
  const ports: OvsPortSpec[] = [bondPort, ...extraTrunkPorts];
  return {
    resources: [{ kind: "ovs-bridge", name: up.trunk_bridge, datapath: up.datapath, ports }],
    links: [],
    bridges: [up.trunk_bridge],
  };
}

/** The libvirt portgroup that isolates a VM (its profileid lands in the OVS Interface's external_ids:port-profile). */
const ISOLATED_PORTGROUP = { name: "isolated", profileId: "netfleet-isolated" } as const;

function vmhostResources(host: Host, networks: Network[], backend: string | undefined, management: string | undefined, inventory: Inventory): ResourceSpec[] {
  const up = host.uplink;
  const trunkMode = up.mode === "ovs-trunk";
  const patches: OvsPortSpec[] = trunkMode
    ? networks.map((n) => {
        const p = patchPortNames(n.name);
        return { name: p.uplink, type: "patch", tag: n.vlan, peer: p.bridge };
      })
    : [];
  const uplink = uplinkResources(host, networks, patches, management, inventory);
  const resources = [...uplink.resources];
  for (const n of networks) {
    const port: OvsPortSpec = trunkMode
      ? { name: patchPortNames(n.name).bridge, type: "patch", peer: patchPortNames(n.name).uplink }
      : { name: networkLink(up, n), type: "system" };
    // Behind a patch port (no MTU) the bridge's own port would stay at 1500, and libvirt gives
    // the taps it plugs their bridge's MTU: ask for the network's. Behind bond0.<vid> OVS follows it.
    // Secure fail mode: the VM bridge forwards only what its rules allow, also before the agent installed them.
    resources.push({ kind: "ovs-bridge", name: bridgeName(n.name), datapath: up.datapath, ports: [port], ...(trunkMode ? { mtu: n.mtu } : {}), failMode: "secure" });
  }
  for (const n of networks) {
    resources.push({
      kind: "vm-port-policy",
      name: bridgeName(n.name),
      network: n.name,
      uplinkPort: trunkMode ? patchPortNames(n.name).bridge : networkLink(up, n),
      gateway: { ip: n.gateway, mac: gatewayMac(n.vlan) },
      isolatedDefault: n.isolated_ports,
      cookie: flowCookie(n.vlan),
      ...(backend ? { leaseSource: backend } : {}),
      isolatedProfile: ISOLATED_PORTGROUP.profileId,
      vms: n.vms.map((vm) => ({
        name: vm.name,
        mac: vm.mac,
        ...(vm.ip ? { ip: vm.ip } : {}),
        isolated: vm.isolated,
        ...(vm.extra_addresses.length > 0 ? { extraAddresses: vm.extra_addresses } : {}),
        ...(vm.groups.length > 0 ? { groups: vm.groups } : {}),
        ...vmBandwidthField(vm),
      })),
    });
  }
  for (const n of networks) {
    resources.push({
      kind: "libvirt-network",
      name: n.name,
      bridge: bridgeName(n.name),
      // No VLAN portgroup: the bridge already sits behind a tagged uplink, a tag on the VM port would double-tag.
      portgroups: [
        { name: "default", default: true },
        { name: ISOLATED_PORTGROUP.name, default: false, profileId: ISOLATED_PORTGROUP.profileId },
      ],
    });
  }
  resources.push({
    kind: "prune",
    name: "host",
    keep: {
      links: uplink.links,
      ovsBridges: [...uplink.bridges, ...networks.map((n) => bridgeName(n.name))],
      libvirtNetworks: networks.map((n) => n.name),
      // The gateway role lives on the backend: a VM host keeps no dnsmasq and no table.
      dnsmasq: [],
      nftTable: false,
    },
  });
  return resources;
}

function backendResources(inventory: Inventory, host: Host, networks: Network[], management: string | undefined): ResourceSpec[] {
  const up = host.uplink;
  const trunkMode = up.mode === "ovs-trunk";
  const gwPorts: OvsPortSpec[] = trunkMode
    ? networks.map((n) => ({ name: gatewayPortName(n.name), type: "internal", tag: n.vlan, mac: gatewayMac(n.vlan), mtu: n.mtu }))
    : [];
  const uplink = uplinkResources(host, networks, gwPorts, management, inventory);
  const resources = [...uplink.resources];
  for (const n of networks) {
    const iface = trunkMode ? gatewayPortName(n.name) : networkLink(up, n);
    resources.push({ kind: "interface-address", name: iface, addresses: [`${n.gateway}/${n.prefix}`], mac: gatewayMac(n.vlan) });
  }
  resources.push({ kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" });
  const gwIface = (n: Network) => (trunkMode ? gatewayPortName(n.name) : networkLink(up, n));
  resources.push(firewall(inventory, host, networks, gwIface));
  for (const n of networks) resources.push(dnsmasqSpec(inventory, n, gwIface(n)));
  resources.push({
    kind: "prune",
    name: "host",
    keep: { links: uplink.links, ovsBridges: uplink.bridges, libvirtNetworks: [], dnsmasq: networks.map((n) => n.name), nftTable: true },
  });
  return resources;
}
