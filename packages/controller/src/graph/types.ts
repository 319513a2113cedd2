import type { Host } from "@netfleet/shared";

/**
 * The topology picture's data: elements (hosts, NICs, bonds, VLAN
 * interfaces, bridges, VMs, networks, the gateway, exits) and the links
 * between them, as graph/model.ts builds them from an inventory and the
 * renderers (dot.ts, mermaid.ts, svg.ts) draw them.
 */

/** What an element is; renderers choose its shape by it. */
export type GraphKind =
  /** A host (drawn as a box around its elements). */
  | "host"
  /** A NIC of a host, a member of its uplink. */
  | "nic"
  /** A bond: Linux bonding (kernel mode) or an OVS bond port (ovs-trunk). */
  | "bond"
  /** A kernel 802.1Q VLAN interface `<bond>.<vlan>`. */
  | "vlan"
  /** The OVS trunk bridge of an ovs-trunk uplink. */
  | "trunk"
  /** A tagged patch-port pair between the trunk bridge and a network's bridge. */
  | "patch"
  /** A network's OVS bridge on a VM host (`br-<network>`). */
  | "bridge"
  /** The interface that holds a network's gateway address on the backend. */
  | "gateway-port"
  /** A VM's NIC in a network. */
  | "vm"
  /** A VM network: its VLAN, addresses and policy; the segment the hosts share. */
  | "network"
  /** The switch fabric the uplink members are cabled to (not managed by netfleet). */
  | "switch"
  /** The backend's gateway role: routing, nftables, DHCP/DNS. */
  | "gateway"
  /** An interface of the backend towards the outside. */
  | "exit"
  /** Whatever lies beyond the exits. */
  | "outside"
  /** A Linux VXLAN device `vx-<network>` (uplink mode vxlan). */
  | "vxlan"
  /** A host's VXLAN tunnel endpoint on the underlay (its underlay address and device). */
  | "underlay"
  /** The underlay network the VXLAN packets cross (site-wide). */
  | "underlay-network"
  /** A mirror's GRE or ERSPAN tunnel target outside the site. */
  | "mirror-target"
  /** An sFlow or IPFIX collector. */
  | "collector"
  /** An uplink mode this picture does not draw in detail (one node for the whole uplink). */
  | "uplink";

/** One thing in the picture. `id` is unique in the model, stable across runs, and made only of the names in it. */
export interface GraphElement {
  id: string;
  kind: GraphKind;
  /** The name of the thing on its host (interface, bridge, port, VM name); what --live looks for. */
  name: string;
  /** A VM's MAC (lower case), by which its port is found. */
  mac?: string;
  /** Lines of its label, first the name. */
  label: string[];
  /** The host it belongs to (drawn inside that host's box); absent for site-wide elements. */
  host?: string;
}

/** A line between two elements. Drawn without arrowheads; `from` is the side nearer the outside. */
export interface GraphLink {
  from: string;
  to: string;
  /** Short text on the line (a VLAN tag, "member"). */
  label?: string;
  /** dashed: a logical link (a VLAN segment, the route out); solid: a port or cable; dotted: a copy of traffic (a mirror, samples). */
  style?: "solid" | "dashed" | "dotted";
  /** Drawn with an arrowhead at `to` (where copied traffic goes: a mirror's destination, a collector). */
  arrow?: boolean;
}

/** A site's picture: its hosts (boxes) and every element and link, in a stable order. */
export interface GraphModel {
  site: string;
  /** One per inventory host, sorted: each is also an element of kind "host". */
  hosts: { name: string; role: Host["role"]; id: string }[];
  elements: GraphElement[];
  links: GraphLink[];
}

/**
 * Element ids: `host:<host>`, `<host>/<kind>:<name>`, `net:<network>`, `vm:<network>/<vm>`, `mirror:<mirror>`,
 * `collector:<sflow|ipfix>/<address:port>`, and the site-wide `switch`, `underlay`, `outside`.
 */
export const graphId = {
  host: (host: string) => `host:${host}`,
  onHost: (host: string, kind: string, name: string) => `${host}/${kind}:${name}`,
  network: (network: string) => `net:${network}`,
  vm: (network: string, vm: string) => `vm:${network}/${vm}`,
  mirrorTarget: (mirror: string) => `mirror:${mirror}`,
  collector: (protocol: "sflow" | "ipfix", target: string) => `collector:${protocol}/${target}`,
  switch: "switch",
  underlay: "underlay",
  outside: "outside",
} as const;
