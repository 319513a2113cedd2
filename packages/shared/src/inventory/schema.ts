import { z } from "zod";
import { DNS_LABEL, DNS_NAME, INTERFACE_NAME, MAC_ADDRESS, NETWORK_NAME } from "../names.ts";
import { isIpv4, parseIpv4Cidr } from "../ipv4.ts";

/**
 * The inventory file format. Every object is strict: an unknown key (a typo)
 * is an error, never silently ignored. Types are derived from these schemas,
 * and `inventoryJsonSchema()` emits a JSON Schema for editor completion.
 */

const ipv4 = z.string().refine(isIpv4, { message: "must be an IPv4 address (a.b.c.d)" });
const cidr = z.string().check((ctx) => {
  const parsed = parseIpv4Cidr(ctx.value);
  if (typeof parsed === "string") ctx.issues.push({ code: "custom", message: parsed, input: ctx.value });
});
const interfaceName = z
  .string()
  .regex(INTERFACE_NAME, "must be a Linux interface name: 1-15 of A-Z a-z 0-9 _ . -, not starting with . or -");
const dnsLabel = z.string().regex(DNS_LABEL, "must be a lowercase DNS label (a-z, 0-9, -; at most 63)");
const dnsName = z.string().regex(DNS_NAME, "must be a lowercase DNS name such as example.org");
const port = z.number().int().min(1).max(65535);
const duration = z
  .string()
  .regex(/^(?:\d+[smhdw]|infinite)$/, 'must be a duration such as 30m, 12h, 1d or "infinite"');

export const NatsUrl = z
  .string()
  .regex(/^(?:nats|tls):\/\/[A-Za-z0-9.-]+:\d{1,5}$/, "must be nats://host:port or tls://host:port");

export const SiteSettings = z.strictObject({
  name: dnsLabel.describe("Site name; owner marker on everything netfleet creates"),
  domain: dnsName.describe("DNS suffix: VMs resolve as <vm>.<network>.<domain>"),
  nats: z.array(NatsUrl).min(1).describe("NATS server URLs (one or a cluster)"),
  management: cidr.optional().describe("Management network of the hosts; no VM network may overlap it"),
  upstream_dns: z.array(ipv4).default([]).describe("Resolvers that open networks forward to"),
});

export const AllowEntry = z
  .strictObject({
    to: z
      .string()
      .refine((s) => isIpv4(s) || typeof parseIpv4Cidr(s) !== "string", {
        message: "must be an IPv4 address or CIDR",
      })
      .optional()
      .describe("Destination address or CIDR"),
    name: dnsName.optional().describe("Destination DNS name; resolved addresses join the allow set"),
    ports: z.array(port).optional().describe("Destination ports; all ports when absent"),
    proto: z.enum(["tcp", "udp"]).default("tcp"),
  })
  .check((ctx) => {
    const hasTo = ctx.value.to !== undefined;
    const hasName = ctx.value.name !== undefined;
    if (hasTo === hasName) {
      ctx.issues.push({ code: "custom", message: "give exactly one of `to` or `name`", input: ctx.value });
    }
  });

export const VmSpec = z.strictObject({
  mac: z.string().regex(MAC_ADDRESS, "must be a MAC address such as 52:54:00:12:34:56"),
  ip: ipv4.optional().describe("Static lease; outside the DHCP range"),
  host: dnsLabel.optional().describe("The VM host it runs on (used by the lab and placement checks)"),
  isolated: z.boolean().optional().describe("Overrides the network's isolated_ports for this VM"),
  allow: z.array(AllowEntry).default([]).describe("Egress allow list (networks with egress: allowlist)"),
  extra_addresses: z
    .array(ipv4)
    .default([])
    .describe("Further addresses this VM may send from and answer ARP for (a virtual IP shared with another VM, as keepalived moves it); Neutron's allowed address pairs"),
});

export const PortForward = z.strictObject({
  listen: port.describe("Port on the backend's external interface"),
  vm: dnsLabel.describe("Target VM in this network (needs a static ip)"),
  port: port.describe("Port on the VM"),
  proto: z.enum(["tcp", "udp"]).default("tcp"),
});

export const NetworkSpec = z.strictObject({
  vlan: z.number().int().min(1, "VLAN id must be 1-4094").max(4094, "VLAN id must be 1-4094"),
  cidr,
  gateway: ipv4,
  dhcp: z.strictObject({
    start: ipv4,
    end: ipv4,
    lease_time: duration.default("12h"),
  }),
  egress: z.enum(["open", "allowlist"]).describe("open: masquerade to anywhere; allowlist: per-VM lists only"),
  dns: z.enum(["open", "allowlist"]).default("open").describe("allowlist: only allow-listed and site names resolve"),
  isolated_ports: z.boolean().default(false).describe("VMs talk only to the gateway (private-VLAN-like)"),
  dns_names: z.array(dnsName).default([]).describe("Extra names every VM of an allowlist network may resolve"),
  vms: z.record(dnsLabel, VmSpec).default({}),
  port_forwards: z.array(PortForward).default([]),
  cluster_groups: z
    .record(dnsLabel, z.array(dnsLabel).min(2, "a cluster group needs two or more VMs"))
    .default({})
    .describe("Named groups of this network's VMs that reach each other across hosts even when isolated (e.g. one Slurm cluster); nothing else but the gateway"),
});

const bondModes = ["active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb", "balance-slb", "balance-tcp"] as const;

export const UplinkSpec = z.strictObject({
  mode: z.enum(["kernel", "ovs-trunk"]).describe("kernel: bond + 8021q; ovs-trunk: OVS bond + tagged patch ports"),
  bond: interfaceName.default("bond0"),
  members: z.array(interfaceName).min(1).max(8),
  bond_mode: z.enum(bondModes).default("active-backup"),
  miimon: z.number().int().min(0).max(10000).default(100),
  mtu: z.number().int().min(68).max(9216).default(1500),
  datapath: z.enum(["system", "netdev"]).default("system").describe("OVS datapath; netdev is userspace"),
  trunk_bridge: interfaceName.default("br-uplink").describe("ovs-trunk mode: the bridge holding the bond"),
});

/**
 * The uplink as a group or host writes it: every field optional and, unlike
 * `UplinkSpec.partial()`, no defaults filled in. A default here would
 * override the value a host's group set (zod applies a default inside an
 * optional); defaults are applied once, after groups and host are merged.
 */
export const UplinkSettings = z.strictObject(
  Object.fromEntries(
    Object.entries(UplinkSpec.shape).map(([key, field]) => {
      const t = field as z.ZodType;
      const bare = t instanceof z.ZodDefault ? (t.unwrap() as z.ZodType) : t;
      return [key, (t.description ? bare.describe(t.description) : bare).optional()];
    }),
  ) as { [K in keyof typeof UplinkSpec.shape]: z.ZodOptional<z.ZodType<z.output<(typeof UplinkSpec.shape)[K]>>> },
);

/** Settings a group gives its hosts and a host may override. */
const hostSettingsShape = {
  role: z.enum(["vmhost", "backend"]),
  uplink: UplinkSettings,
  networks: z.array(z.string()).describe("Networks this host carries (a backend carries all)"),
  labels: z.record(
    z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, "must be a label key: 1-63 of a-z 0-9 _ . -, starting with a letter or digit"),
    z.string().max(253),
  ),
  external_interface: interfaceName.describe("backend: interface towards the internet (masquerade, port-forwards)"),
};

export const GroupSpec = z.strictObject(hostSettingsShape).partial();

export const HostSpec = z
  .strictObject({
    ...hostSettingsShape,
    groups: z.array(z.string()),
    address: ipv4.describe("Management address"),
    mac: z.string().regex(MAC_ADDRESS).describe("Management MAC, to match an enrolling agent"),
  })
  .partial();

export const InventoryFile = z.strictObject({
  site: SiteSettings.optional(),
  networks: z.record(z.string(), NetworkSpec).optional(),
  groups: z.record(z.string(), GroupSpec).optional(),
  hosts: z.record(z.string(), HostSpec).optional(),
});

export type SiteSettings = z.output<typeof SiteSettings>;
export type AllowEntry = z.output<typeof AllowEntry>;
export type VmSpec = z.output<typeof VmSpec>;
export type PortForward = z.output<typeof PortForward>;
export type NetworkSpec = z.output<typeof NetworkSpec>;
export type UplinkSpec = z.output<typeof UplinkSpec>;
export type GroupSpec = z.output<typeof GroupSpec>;
export type HostSpec = z.output<typeof HostSpec>;
export type InventoryFile = z.output<typeof InventoryFile>;

/** The full uplink after group and host settings are merged and defaults applied. */
export const ResolvedUplink = UplinkSpec;

export { NETWORK_NAME };

export function inventoryJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(InventoryFile, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return {
    ...schema,
    $id: "https://netfleet.dev/schema/inventory.json",
    title: "netfleet inventory file",
  };
}
