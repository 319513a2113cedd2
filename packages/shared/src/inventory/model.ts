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
}

export interface Vm {
  name: string;
  network: string;
  mac: string;
  ip?: string;
  host?: string;
  isolated: boolean;
  allow: AllowEntry[];
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
