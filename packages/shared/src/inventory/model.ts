import type { AllowEntry, PortForward, SiteSettings, UplinkSpec } from "./schema.ts";

/** A validated site, with group settings merged into hosts and defaults applied. Sorted by name. */
export interface Inventory {
  dir: string;
  site: SiteSettings;
  networks: Network[];
  hosts: Host[];
}

export interface Network {
  name: string;
  vlan: number;
  cidr: string;
  prefix: number;
  gateway: string;
  dhcp: { start: string; end: string; lease_time: string };
  egress: "open" | "allowlist";
  dns: "open" | "allowlist";
  isolated_ports: boolean;
  dns_names: string[];
  vms: Vm[];
  port_forwards: PortForward[];
  /** Cluster group name -> member VM names (sorted), all of this network. */
  cluster_groups: Record<string, string[]>;
}

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
}

export type HostRole = "vmhost" | "backend";

export interface Host {
  name: string;
  role: HostRole;
  address?: string;
  mac?: string;
  groups: string[];
  labels: Record<string, string>;
  networks: string[];
  uplink: UplinkSpec;
  external_interface?: string;
}
