import { z } from "zod";
import { DNS_LABEL, DNS_NAME, DNS_NAME_OR_WILDCARD, INTERFACE_NAME, MAC_ADDRESS, NETWORK_NAME } from "../names.ts";
import { parsePortRange } from "./ports.ts";
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
const allowedName = z
  .string()
  .regex(DNS_NAME_OR_WILDCARD, "must be a lowercase DNS name (example.org: exactly that name) or a wildcard (*.example.org: its subdomains only)");
const cidrOrAddress = z.string().refine((s) => isIpv4(s) || typeof parseIpv4Cidr(s) !== "string", {
  message: "must be an IPv4 address or CIDR (a.b.c.d/len, no host bits)",
});
/** A port (`22`) or an inclusive range (`"8000-8100"`), 1-65535; see ports.ts. */
const portOrRange = z.union([z.number(), z.string()]).check((ctx) => {
  const r = parsePortRange(ctx.value);
  if (typeof r === "string") ctx.issues.push({ code: "custom", message: r, input: ctx.value });
});
const proto = z.enum(["tcp", "udp"]);
/** Protocol and ports, the shape of gateway_services and reserved_ports entries. */
export const PortSet = z.strictObject({
  proto: proto.default("tcp").describe("tcp or udp (default tcp)"),
  ports: z.array(portOrRange).min(1).describe('Ports and inclusive ranges, 1-65535: [22, "8000-8100"]'),
});
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
  egress_deny: z
    .array(cidrOrAddress)
    .default([])
    .describe("Destinations (addresses or CIDRs) no network of the site reaches, whatever its egress; added to the ones always denied: the management network, 169.254.0.0/16 (link-local, cloud metadata), the site's other networks and the backend's external subnets"),
  dns_max_ttl: z
    .number()
    .int()
    .min(1)
    .max(86400)
    .default(300)
    .describe("Seconds: cap on the TTL dnsmasq caches and hands to VMs (dnsmasq --max-cache-ttl, --max-ttl). An address a VM got from an answer may sit in dnsmasq's cache and then in the VM's for up to this long each"),
  allow_vlan_1: z
    .boolean()
    .default(false)
    .describe("Allow VLAN id 1 for a network. Most switches treat VLAN 1 as the native (untagged) VLAN of a trunk, so its frames leave untagged and mix with the management traffic; set true only when the site's trunks carry VLAN 1 tagged"),
  name_set_timeout: z
    .number()
    .int()
    .min(1)
    .max(604800)
    .default(3600)
    .describe("Seconds an address stays in an allowed name's nft set after dnsmasq last put it there or a connection last used it; at least 2 x dns_max_ttl, so an address a VM still holds from a cached answer is still allowed"),
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
    name: allowedName
      .optional()
      .describe("Destination DNS name; the addresses dnsmasq answers for it join its nft set. `static.example.org` is exactly that name; `*.example.org` is its subdomains (not example.org itself)"),
    ports: z.array(port).min(1, "give at least one port, or leave ports out for every port").optional().describe("Destination ports, 1-65535; every port when absent (an empty list is refused: it would read as none but mean all)"),
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
  ip: ipv4.optional().describe("Static lease; outside the DHCP range. Required on a network without DHCP"),
  host: dnsLabel.optional().describe("The VM host it runs on (used by the lab and placement checks)"),
  isolated: z.boolean().optional().describe("Overrides the network's isolated_ports for this VM"),
  allow: z.array(AllowEntry).default([]).describe("Egress allow list (networks with egress: allowlist)"),
  extra_addresses: z
    .array(ipv4)
    .default([])
    .describe("Further addresses this VM may send from and answer ARP for (a virtual IP shared with another VM, as keepalived moves it); Neutron's allowed address pairs"),
});

const forwardFrom = z
  .array(cidrOrAddress)
  .default([])
  .describe("Source addresses or CIDRs allowed to use the forward; empty or absent: any source");
const forwardForce = z
  .boolean()
  .default(false)
  .describe("true: allow a listen port that is one of the backend's reserved_ports (e.g. its own SSH on 22), which the forward then shadows on the external interfaces");

export const PortForward = z.strictObject({
  listen: port.describe("Port on the backend's external interfaces (and, hairpinned, on its addresses from the site's VMs)"),
  vm: dnsLabel.describe("Target VM in this network; it needs a static ip (use port_ranges to reach DHCP VMs)"),
  port: port.describe("Port on the VM"),
  proto: proto.default("tcp"),
  from: forwardFrom,
  force: forwardForce,
});

/**
 * Seed 002's proxied access: a block of backend ports mapped onto every
 * host address of the network, `listen + (address - network address)` ->
 * address:`port`. For 192.168.122.0/24 and listen 22000, 192.168.122.5:22
 * is reached at backend port 22005; DHCP VMs too. The gateway's own address
 * is left out.
 */
export const PortRangeForward = z.strictObject({
  listen: port.describe("Base port on the backend: address a.b.c.d of the network is reached at listen + (a.b.c.d - network address); the whole block must end at or below 65535"),
  port: port.describe("Port on every VM (e.g. 22)"),
  proto: proto.default("tcp"),
  from: forwardFrom,
  force: forwardForce,
});

export const NetworkSpec = z.strictObject({
  vlan: z.number().int().min(1, "VLAN id must be 1-4094").max(4094, "VLAN id must be 1-4094"),
  cidr,
  gateway: ipv4,
  mtu: z
    .number()
    .int()
    .min(68)
    .max(9216)
    .optional()
    .describe("Bytes: MTU of this network's VLAN interfaces, VM bridges and gateway port, announced to VMs by DHCP (option 26). Default: the smallest uplink mtu of the hosts carrying it; may not exceed any of them"),
  dhcp: z
    .union([
      z.strictObject({
        start: ipv4,
        end: ipv4,
        lease_time: duration.default("12h"),
      }),
      z.literal(false),
    ])
    .optional()
    .describe("DHCP range of dnsmasq on the gateway. false or absent: no DHCP on this network (VMs set their addresses; each VM needs a static ip)"),
  router: z
    .boolean()
    .default(true)
    .describe("Whether DHCP offers the gateway as default route (option 3). false: no default route from this network, e.g. a VM's second NIC on a storage network"),
  egress: z.enum(["open", "allowlist"]).describe("open: masquerade to anywhere but egress_deny and the always-denied destinations; allowlist: per-VM lists only"),
  dns: z
    .enum(["open", "allowlist"])
    .optional()
    .describe("open: every name resolves; allowlist: only allow-listed and site names resolve. Default: the network's egress"),
  dns_open_with_allowlist: z
    .boolean()
    .default(false)
    .describe("Override: allow dns: open on an egress: allowlist network. Every name then resolves, which makes DNS itself a way out (a DNS tunnel carries data in queries to any domain); only for a network whose VMs are trusted"),
  egress_deny: z
    .array(cidrOrAddress)
    .default([])
    .describe("Destinations (addresses or CIDRs) this network never reaches, added to the site's egress_deny and the always-denied ones"),
  gateway_services: z
    .array(PortSet)
    .default([])
    .describe("Services on the gateway address (the backend) this network's VMs may reach, beyond DHCP, DNS and ICMP echo: [{ proto: tcp, ports: [22, \"8000-8100\"] }]"),
  isolated_ports: z.boolean().default(false).describe("VMs talk only to the gateway (private-VLAN-like)"),
  dns_names: z
    .array(allowedName)
    .default([])
    .describe("Extra names every VM of an allowlist network may resolve: `example.org` exactly, `*.example.org` its subdomains"),
  vms: z
    .record(dnsLabel, VmSpec)
    .default({})
    .describe("VMs by name. The same name in two networks is one VM with a NIC in each (distinct MACs); only one of those networks may offer it a default route"),
  port_forwards: z.array(PortForward).default([]).describe("Backend ports forwarded to one VM each (DNAT)"),
  port_ranges: z
    .array(PortRangeForward)
    .default([])
    .describe("Backend port blocks mapped onto every address of the network (listen + host part -> address:port), DHCP VMs included"),
  audit: z
    .boolean()
    .default(true)
    .describe("Log new outbound connections and drops at the gateway to nflog group <vlan> (the network's VLAN id, unique per site); false: no audit records"),
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
  lacp: z
    .enum(["active", "passive", "off"])
    .optional()
    .describe("LACP (IEEE 802.1AX) on the bond. active: send LACPDUs; passive: answer the switch's; off: none. Default: active for bond_mode 802.3ad (kernel) and balance-tcp (ovs-trunk), which need a negotiated LACP aggregate (OVS drops every frame of a balance-tcp bond without it); off otherwise, where it may not be set"),
  carries_management: z
    .boolean()
    .default(false)
    .describe("kernel mode: the host's management address (its `address`, in the site's management network) lives on this bond. The agent then moves it and the routes through it from the member that holds it onto the bond, and undoes the move if the default gateway stops answering. false: no bond member may hold an address or the default route (the agent refuses to enslave it)"),
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
  external_interface: interfaceName.describe("backend: interface towards the internet (masquerade, port-forwards); or external_interfaces"),
  external_interfaces: z
    .array(interfaceName)
    .min(1)
    .describe("backend: interfaces towards the outside, when there are several (masquerade and port-forwards on each); not together with external_interface"),
  reserved_ports: z
    .array(PortSet)
    .describe("backend: its own services on the external interfaces, which no port-forward may shadow unless it says force: true. Default: [{ proto: tcp, ports: [22] }]"),
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
export type PortRangeForward = z.output<typeof PortRangeForward>;
export type PortSet = z.output<typeof PortSet>;
export type NetworkSpec = z.output<typeof NetworkSpec>;
export type UplinkSpec = z.output<typeof UplinkSpec>;
export type GroupSpec = z.output<typeof GroupSpec>;
export type HostSpec = z.output<typeof HostSpec>;
export type InventoryFile = z.output<typeof InventoryFile>;

/**
 * The LACP setting an uplink runs with: its `lacp`, else `active` for the
 * bond modes that need a negotiated aggregate (kernel 802.3ad, OVS
 * balance-tcp: ovs-vswitchd.conf.db(5) says a balance-tcp bond without LACP
 * falls back, and in practice the switch side drops its frames), else `off`.
 */
export function uplinkLacp(up: Pick<UplinkSpec, "lacp" | "bond_mode">): "active" | "passive" | "off" {
  return up.lacp ?? (up.bond_mode === "802.3ad" || up.bond_mode === "balance-tcp" ? "active" : "off");
}

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
