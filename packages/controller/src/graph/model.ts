import { bridgeName, type Host, type Inventory, type Network, type Vm } from "@netfleet/shared";
import { graphId, type GraphElement, type GraphLink, type GraphModel } from "./types.ts";
import { collectorElements, mirrorElements } from "./flows.ts";
import { uplinkElements, type HostPorts } from "./uplink.ts";

/**
 * The topology of a site as a graph: what `netfleet graph` draws, a pure
 * function of the loaded inventory (the same names compile/compile.ts gives
 * the things it makes: shared names.ts bridgeName, vlanInterfaceName,
 * patchPortNames, gatewayPortName).
 */

/**
 * The site's topology: per host its uplink (members, bond and bond mode,
 * LACP, MTU; VLAN interfaces or the trunk bridge and its tagged patch
 * ports), its networks' bridges and the VMs on them; the backend's gateway
 * ports, gateway role and exits; one node per network (VLAN, addresses,
 * policy) joining the hosts that carry it; the switch the members are
 * cabled to (or the underlay the VXLAN endpoints share); the outside; the
 * mirrors (source VMs or network to the capture VM or tunnel target) and
 * the sFlow/IPFIX collectors with the bridges that export to them. Pure and deterministic (inventory order: hosts and
 * networks are sorted by the loader).
 */
export function buildGraph(inventory: Inventory): GraphModel {
  const elements: GraphElement[] = [];
  const links: GraphLink[] = [];
  const add = (e: GraphElement) => elements.push(e);
  const link = (l: GraphLink) => links.push(l);
  const hosts: GraphModel["hosts"] = [];
  const networks = [...inventory.networks].sort((a, b) => a.vlan - b.vlan);

  // A VNI is shown only where some host carries networks over VXLAN.
  const overlay = inventory.hosts.some((h) => h.uplink.mode === "vxlan");
  const segment = (n: Network) => segmentLabel(n, overlay);
  for (const n of networks) add({ id: graphId.network(n.name), kind: "network", name: n.name, label: networkLabel(n, overlay) });
  const cabled = inventory.hosts.some((h) => h.uplink.mode !== "vxlan" && h.uplink.members.length > 0);
  if (cabled) add({ id: graphId.switch, kind: "switch", name: "switch", label: ["switch", `802.1Q trunk: VLAN ${networks.map((n) => n.vlan).join(", ") || "none"}`] });
  if (inventory.hosts.some((h) => h.uplink.mode === "vxlan")) {
    const management = inventory.site.management;
    add({ id: graphId.underlay, kind: "underlay-network", name: "underlay", label: ["underlay", `VXLAN (UDP 4789): VNI ${networks.map((n) => n.vni).join(", ") || "none"}`, ...(management ? [`management ${management}`] : [])] });
  }

  for (const host of inventory.hosts) {
    const id = graphId.host(host.name);
    hosts.push({ name: host.name, role: host.role, id });
    add({ id, kind: "host", name: host.name, label: hostLabel(host), host: host.name });
    const carried = networks.filter((n) => host.networks.includes(n.name) || host.role === "backend");
    const up = uplinkElements(host, carried);
    up.elements.forEach(add);
    up.links.forEach(link);
    for (const nic of up.nics) link(host.uplink.mode === "vxlan" ? { from: graphId.underlay, to: nic, label: "VXLAN" } : { from: graphId.switch, to: nic, label: "cable" });
    if (host.role === "backend") backendElements(inventory, host, carried, up.ports, segment, add, link);
    else vmhostElements(host, carried, up.ports, segment, add, link);
  }

  // A VM without a host (not placed yet) hangs off its network alone.
  for (const n of networks) {
    for (const vm of n.vms.filter((v) => !placedOn(inventory, v))) {
      add({ id: graphId.vm(n.name, vm.name), kind: "vm", name: vm.name, mac: vm.mac, label: [...vmLabel(vm), "not placed on a host"] });
      link({ from: graphId.network(n.name), to: graphId.vm(n.name, vm.name), style: "dashed" });
    }
  }
  mirrorElements(inventory, add, link);
  collectorElements(inventory, add, link);
  return { site: inventory.site.name, hosts, elements, links };
}

/** Whether `vm` sits on a VM host that carries its network (the loader checks this; a stray one is drawn unplaced). */
function placedOn(inventory: Inventory, vm: Vm): boolean {
  const host = inventory.hosts.find((h) => h.name === vm.host);
  return host !== undefined && host.role === "vmhost" && host.networks.includes(vm.network);
}

function vmhostElements(host: Host, networks: Network[], ports: HostPorts, segmentLabel: (n: Network) => string, add: (e: GraphElement) => void, link: (l: GraphLink) => void): void {
  for (const n of networks) {
    const bridge = graphId.onHost(host.name, "bridge", bridgeName(n.name));
    add({ id: bridge, kind: "bridge", name: bridgeName(n.name), label: [bridgeName(n.name), `OVS bridge, fail_mode secure`, `datapath ${host.uplink.datapath}`], host: host.name });
    const port = ports.get(n.name);
    if (port) link({ from: port, to: bridge });
    link({ from: graphId.network(n.name), to: port ?? bridge, label: segmentLabel(n), style: "dashed" });
    for (const vm of n.vms.filter((v) => v.host === host.name)) {
      const id = graphId.vm(n.name, vm.name);
      add({ id, kind: "vm", name: vm.name, mac: vm.mac, label: vmLabel(vm), host: host.name });
      link({ from: bridge, to: id });
    }
  }
}

function backendElements(inventory: Inventory, host: Host, networks: Network[], ports: HostPorts, segmentLabel: (n: Network) => string, add: (e: GraphElement) => void, link: (l: GraphLink) => void): void {
  const gateway = graphId.onHost(host.name, "gateway", "gateway");
  const forwards = networks.reduce((sum, n) => sum + n.port_forwards.length + n.port_ranges.length, 0);
  add({
    id: gateway,
    kind: "gateway",
    name: "gateway",
    label: ["gateway", "nftables inet netfleet: forward drop, masquerade", `dnsmasq: DHCP and DNS on ${networks.length} network${networks.length === 1 ? "" : "s"}`, ...(forwards ? [`${forwards} port forward${forwards === 1 ? "" : "s"}`] : [])],
    host: host.name,
  });
  for (const n of networks) {
    const port = ports.get(n.name);
    if (!port) continue;
    link({ from: gateway, to: port, label: `${n.gateway}/${n.prefix}` });
    link({ from: port, to: graphId.network(n.name), label: segmentLabel(n), style: "dashed" });
  }
  const exits = host.external_interfaces ?? (host.external_interface ? [host.external_interface] : []);
  if (exits.length === 0) return;
  const dns = inventory.site.upstream_dns;
  add({ id: graphId.outside, kind: "outside", name: "outside", label: ["outside", ...(dns.length ? [`upstream DNS ${dns.join(", ")}`] : [])] });
  for (const name of exits) {
    const id = graphId.onHost(host.name, "exit", name);
    add({ id, kind: "exit", name, label: [name, "exit: masquerade, port forwards"], host: host.name });
    link({ from: graphId.outside, to: id, style: "dashed" });
    link({ from: id, to: gateway });
  }
}

/** The text of a host's box: name, role, management address, labels. */
function hostLabel(host: Host): string[] {
  const labels = Object.entries(host.labels).map(([k, v]) => `${k}=${v}`);
  return [host.name, `${host.role}${host.address ? `, ${host.address}` : ""}`, ...(labels.length ? [labels.join(", ")] : [])];
}

/** The VXLAN id of a network, shown when `overlay` (some host carries networks over VXLAN). */
function vniOf(n: Network, overlay: boolean): number | undefined {
  return overlay ? n.vni : undefined;
}

function networkLabel(n: Network, overlay: boolean): string[] {
  const vni = vniOf(n, overlay);
  return [
    n.name,
    `VLAN ${n.vlan}${vni !== undefined ? `, VNI ${vni}` : ""}, ${n.cidr}`,
    `gateway ${n.gateway}, MTU ${n.mtu}`,
    `egress ${n.egress}, dns ${n.dns}${n.isolated_ports ? ", isolated ports" : ""}`,
    ...(n.dhcp ? [`DHCP ${n.dhcp.start} - ${n.dhcp.end}`] : []),
  ];
}

/** The text on a network's line to a host: its VLAN id (and VNI when the network has one). */
function segmentLabel(n: Network, overlay: boolean): string {
  const vni = vniOf(n, overlay);
  return vni !== undefined ? `VLAN ${n.vlan} / VNI ${vni}` : `VLAN ${n.vlan}`;
}

function vmLabel(vm: Vm): string[] {
  const addresses = [vm.ip ?? "DHCP", ...vm.extra_addresses].join(", ");
  const policy = [vm.isolated ? "isolated" : undefined, vm.groups.length ? `groups ${vm.groups.join(", ")}` : undefined].filter((p): p is string => !!p);
  return [vm.name, vm.mac, addresses, ...(policy.length ? [policy.join(", ")] : [])];
}
