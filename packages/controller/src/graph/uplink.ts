import { gatewayPortName, patchPortNames, uplinkLacp, vlanInterfaceName, VXLAN_UDP_PORT, vxlanInterfaceName, type Host, type Network } from "@netfleet/shared";
import { graphId, type GraphElement, type GraphLink } from "./types.ts";

/** Per network (name), the element of a host where that network leaves its uplink: a VLAN interface, a patch pair, a gateway port. */
export type HostPorts = Map<string, string>;

/** A host's uplink in the picture: its elements and links, its NICs (cabled to the switch; vxlan: its tunnel endpoint, on the underlay), and where each network leaves it. */
export interface UplinkElements {
  elements: GraphElement[];
  links: GraphLink[];
  nics: string[];
  ports: HostPorts;
}

/**
 * The uplink of `host` for the networks it carries, named as
 * compile/compile.ts names what it makes:
 * - kernel: the NICs, the Linux bond (bond_mode, LACP, miimon, MTU) and one
 *   802.1Q interface `<bond>.<vlan>` per network (on the backend it holds
 *   the network's gateway address);
 * - ovs-trunk: the NICs, the OVS bond port (or the one NIC as a plain port)
 *   on the trunk bridge, and per network a patch pair `pu-<net>`/`pb-<net>`
 *   tagged with its VLAN (vmhost) or an internal port `gw-<net>` with that
 *   tag and the gateway address (backend);
 * - vxlan: the host's tunnel endpoint on the underlay (underlay address,
 *   device) and per network a Linux VXLAN device `vx-<net>` (VNI, UDP 4789;
 *   on the backend it holds the gateway address), as compile/vxlan.ts;
 * - another mode: one element for the whole uplink.
 */
export function uplinkElements(host: Host, networks: readonly Network[]): UplinkElements {
  const up = host.uplink;
  const on = (kind: string, name: string) => graphId.onHost(host.name, kind, name);
  const out: UplinkElements = { elements: [], links: [], nics: [], ports: new Map() };
  const add = (e: Omit<GraphElement, "host">) => out.elements.push({ ...e, host: host.name });
  const lacp = uplinkLacp(up);
  const backend = host.role === "backend";
  for (const nic of up.members) {
    out.nics.push(on("nic", nic));
    add({ id: on("nic", nic), kind: "nic", name: nic, label: [nic, up.members.length > 1 ? "bond member" : "uplink NIC"] });
  }

  if (up.mode === "kernel") {
    const bond = on("bond", up.bond);
    add({
      id: bond,
      kind: "bond",
      name: up.bond,
      label: [up.bond, `Linux bond, ${up.bond_mode}${lacp !== "off" ? `, LACP ${lacp}` : ""}`, `miimon ${up.miimon} ms, MTU ${up.mtu}`, ...(up.carries_management ? [`management ${host.address ?? ""}`.trim()] : [])],
    });
    for (const nic of out.nics) out.links.push({ from: nic, to: bond, label: "member" });
    for (const n of networks) {
      const name = vlanInterfaceName(up.bond, n.vlan);
      const id = on("vlan", name);
      add({ id, kind: "vlan", name, label: [name, `802.1Q VLAN ${n.vlan}, MTU ${n.mtu}`, ...(backend ? [`gateway ${n.gateway}/${n.prefix}`] : [])] });
      out.links.push({ from: bond, to: id, label: `VLAN ${n.vlan}` });
      out.ports.set(n.name, id);
    }
    return out;
  }

  if (up.mode === "ovs-trunk") {
    const trunk = on("trunk", up.trunk_bridge);
    add({ id: trunk, kind: "trunk", name: up.trunk_bridge, label: [up.trunk_bridge, "OVS trunk bridge", `datapath ${up.datapath}`] });
    const trunks = `trunks ${networks.map((n) => n.vlan).join(", ") || "none"}`;
    if (up.members.length >= 2) {
      const bond = on("bond", up.bond);
      add({ id: bond, kind: "bond", name: up.bond, label: [up.bond, `OVS bond, ${up.bond_mode}${lacp !== "off" ? `, LACP ${lacp}` : ""}`, `${trunks}, MTU ${up.mtu}`] });
      for (const nic of out.nics) out.links.push({ from: nic, to: bond, label: "member" });
      out.links.push({ from: bond, to: trunk });
    } else {
      for (const nic of out.nics) out.links.push({ from: nic, to: trunk, label: `${trunks}, MTU ${up.mtu}` });
    }
    for (const n of networks) {
      if (backend) {
        const name = gatewayPortName(n.name);
        const id = on("gw", name);
        add({ id, kind: "gateway-port", name, label: [name, `OVS internal port, tag ${n.vlan}`, `gateway ${n.gateway}/${n.prefix}`] });
        out.links.push({ from: trunk, to: id, label: `tag ${n.vlan}` });
        out.ports.set(n.name, id);
      } else {
        const p = patchPortNames(n.name);
        const id = on("patch", n.name);
        add({ id, kind: "patch", name: p.uplink, label: [`${p.uplink} - ${p.bridge}`, `patch ports, tag ${n.vlan}`] });
        out.links.push({ from: trunk, to: id, label: `tag ${n.vlan}` });
        out.ports.set(n.name, id);
      }
    }
    return out;
  }

  if (up.mode === "vxlan") {
    const vtep = on("underlay", "vtep");
    const address = up.underlay_address ?? host.address ?? "";
    add({ id: vtep, kind: "underlay", name: up.underlay ?? "", label: ["VXLAN endpoint", `${address}, UDP ${VXLAN_UDP_PORT}`, up.underlay ? `via ${up.underlay}, MTU ${up.mtu}` : `via the route to each peer, MTU ${up.mtu}`] });
    out.nics.push(vtep);
    for (const n of networks) {
      const name = vxlanInterfaceName(n.name);
      const id = on("vxlan", name);
      add({ id, kind: "vxlan", name, label: [name, `VXLAN VNI ${n.vni}, MTU ${n.mtu}`, ...(backend ? [`gateway ${n.gateway}/${n.prefix}`] : [])] });
      out.links.push({ from: vtep, to: id, label: `VNI ${n.vni}` });
      out.ports.set(n.name, id);
    }
    return out;
  }

  const id = on("uplink", up.mode);
  add({ id, kind: "uplink", name: up.mode, label: [`uplink ${up.mode}`, `MTU ${up.mtu}`] });
  for (const nic of out.nics) out.links.push({ from: nic, to: id });
  for (const n of networks) out.ports.set(n.name, id);
  return out;
}
