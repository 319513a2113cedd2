import type { AllowEntry, PortForward, PortRangeForward, SiteSettings, UplinkSpec } from "./schema.ts";
import type { PortRange } from "./ports.ts";
import type { Mirror } from "./model-mirror.ts";
import type { Bandwidth } from "../bandwidth.ts";
import type { PolicySources } from "./profiles.ts";

/** Protocol and an inclusive port range, as gateway_services and reserved_ports resolve. */
export interface ProtoPorts extends PortRange {
  proto: "tcp" | "udp";
}

/** A validated site, with group settings merged into hosts and defaults applied. Sorted by name. */
export interface Inventory {
  dir: string;
  site: SiteSettings;
  networks: Network[];
  hosts: Host[];
  /** Port mirrors (inventory `mirrors:`, check-mirrors.ts), sorted by name; absent: none. */
  mirrors?: Mirror[];
}

/** A network as the compiler reads it: checked, DHCP and DNS resolved, its VMs sorted by name, the MTU settled with the hosts. */
export interface Network {
  name: string;
  vlan: number;
  /** VXLAN Network Identifier (its `vni`, else its vlan id): the segment in uplink mode vxlan. */
  vni: number;
  cidr: string;
  prefix: number;
  gateway: string;
  /** Bytes: the network's MTU on every host carrying it (explicit, or the smallest uplink mtu of those hosts). */
  mtu: number;
  /** Absent: no DHCP on this network (every VM has a static ip). */
  dhcp?: { start: string; end: string; lease_time: string };
  /** Whether DHCP offers the gateway as default route (option 3). */
  router: boolean;
  egress: "open" | "allowlist";
  /** Resolved: the inventory's `dns`, or the network's egress. */
  dns: "open" | "allowlist";
  /** This network's own egress_deny (the site's is in `site.egress_deny`). */
  egress_deny: string[];
  /** Gateway services the VMs may reach, one entry per port or range, sorted. */
  gateway_services: ProtoPorts[];
  /** Whether the gateway logs this network's new outbound connections and drops (nflog group = vlan). */
  audit: boolean;
  isolated_ports: boolean;
  dns_names: string[];
  vms: Vm[];
  port_forwards: PortForward[];
  port_ranges: PortRangeForward[];
  /** Cluster group name -> member VM names (sorted), all of this network. */
  cluster_groups: Record<string, string[]>;
}

/** A VM's NIC in one network, resolved (MAC lowercase, isolation from the network unless set, cluster groups). */
export interface Vm {
  name: string;
  network: string;
  mac: string;
  ip?: string;
  host?: string;
  isolated: boolean;
  allow: AllowEntry[];
  /** Further addresses the VM may use (virtual IPs), inside the network, never the gateway. */
  extra_addresses: string[];
  /** Names of the cluster groups it belongs to (sorted). */
  groups: string[];
  /** Limits in bit/s and bits, VM-centric: egress = what the VM sends, ingress = what it receives. Absent side: unlimited. */
  bandwidth?: Bandwidth;
  /** Gateway services this VM may reach beyond its network's (from its profile or its own key), sorted. Absent: none. */
  gateway_services?: ProtoPorts[];
  /** The profile it takes its policy from (its own `profile:` or its network's), and where each policy value came from. */
  profile?: string;
  sources?: PolicySources;
}

/** vmhost runs VMs; backend is the site's one gateway. */
export type HostRole = "vmhost" | "backend";

/** A host with its groups merged under its own settings and defaults applied. */
export interface Host {
  name: string;
  role: HostRole;
  address?: string;
  mac?: string;
  groups: string[];
  labels: Record<string, string>;
  networks: string[];
  uplink: UplinkSpec;
  /** The first of `external_interfaces` (backend only). */
  external_interface?: string;
  /** backend: interfaces towards the outside, in inventory order; [] on a vmhost. Always set by the loader. */
  external_interfaces?: string[];
  /** backend: its own services no port-forward may shadow without force; default tcp 22. Always set by the loader. */
  reserved_ports?: ProtoPorts[];
}

export type { Mirror } from "./model-mirror.ts";
