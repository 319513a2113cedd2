import { z } from "zod";
import { DNS_LABEL, DNS_NAME, DNS_NAME_OR_WILDCARD, IFNAME_MAX, INTERFACE_NAME, IPROUTE2_KEYWORDS, MAC_ADDRESS, NETWORK_NAME } from "../names.ts";
import { parsePortRange } from "./ports.ts";
import { isIpv4, parseIpv4Cidr } from "../ipv4.ts";
import { isNatsUrl } from "../nats-url.ts";
import { CIDR_OR_ADDRESS_PATTERN, CIDR_PATTERN, interfaceNamePattern, IPV4_PATTERN, NATS_URL_PATTERN, networkCidrPattern, PORT_RANGE_PATTERN, UNICAST_MAC_PATTERN } from "./schema-patterns.ts";
import { SPECIAL_PURPOSE_BLOCKS } from "./check-addresses.ts";
import { allowEntryRules, hostRules, hostUplinkRules, inventoryFileRules, networkRules, siteRules, vmRules } from "./schema-rules.ts";

/**
 * The inventory file format. Every object is strict: an unknown key (a typo)
 * is an error, never silently ignored. Types are derived from these schemas,
 * and `inventoryJsonSchema()` emits a JSON Schema for editors.
 *
 * Two layers: the zod validators (what `netfleet validate` runs, with its
 * messages), and `.meta({...})` on them, which adds JSON-Schema-only keywords
 * (patterns for rules checked in code, `propertyNames`, `if`/`then` between
 * keys of one object, `patternErrorMessage` for editors) and changes nothing
 * zod checks: `.meta()` returns a copy with the same checks.
 */

/**
 * JSON-Schema-only keywords on a zod schema; zod validation is unchanged.
 * An `id` puts the schema once under `definitions` (the long patterns:
 * CIDRs, interface names), referenced from each place that uses it.
 */
function json<T extends z.ZodType>(schema: T, keywords: Record<string, unknown>): T {
  return schema.meta(keywords);
}

const IPV4_HELP = "must be an IPv4 address (a.b.c.d)";
const ipv4 = json(z.string().refine(isIpv4, { message: IPV4_HELP }), { pattern: IPV4_PATTERN, patternErrorMessage: `${IPV4_HELP}, each part 0-255 without leading zeros` });
const cidr = json(
  z.string().check((ctx) => {
    const parsed = parseIpv4Cidr(ctx.value);
    if (typeof parsed === "string") ctx.issues.push({ code: "custom", message: parsed, input: ctx.value });
  }),
  { id: "cidr", pattern: CIDR_PATTERN, patternErrorMessage: "must be an IPv4 network a.b.c.d/len: len 0-32 and the host bits zero (10.1.0.0/24, not 10.1.0.1/24)" },
);
const IFNAME_HELP = "must be a Linux interface name: 1-15 of A-Z a-z 0-9 _ . -, not starting with . or -";
const interfaceName = json(z.string().regex(INTERFACE_NAME, IFNAME_HELP), { maxLength: IFNAME_MAX, patternErrorMessage: IFNAME_HELP });
const KEYWORD_HELP = "not an iproute2 keyword or a prefix of one (up, h for help, mast for master, dev, link...), which ip link would read as that option";
/** A name the user gives an interface netfleet creates or configures (bond, trunk bridge): no iproute2 keyword. */
const ownInterfaceName = json(interfaceName, { id: "interface_name", pattern: interfaceNamePattern(IPROUTE2_KEYWORDS), patternErrorMessage: `${IFNAME_HELP}; ${KEYWORD_HELP}` });
/** A NIC of the host (bond member, external interface): no iproute2 keyword, not lo or ovs-system (every host has them). */
const hostInterfaceName = json(interfaceName, {
  id: "nic_name",
  pattern: interfaceNamePattern(IPROUTE2_KEYWORDS, ["lo", "ovs-system"]),
  patternErrorMessage: `${IFNAME_HELP}; ${KEYWORD_HELP}; not lo or ovs-system`,
});
const DNS_LABEL_HELP = "must be a lowercase DNS label (a-z, 0-9, -; at most 63)";
const dnsLabel = json(z.string().regex(DNS_LABEL, DNS_LABEL_HELP), { maxLength: 63, patternErrorMessage: DNS_LABEL_HELP });
const DNS_NAME_HELP = "must be a lowercase DNS name such as example.org";
const dnsName = json(z.string().regex(DNS_NAME, DNS_NAME_HELP), { maxLength: 253, patternErrorMessage: DNS_NAME_HELP });
const port = z.number().int().min(1).max(65535);
const ALLOWED_NAME_HELP = "must be a lowercase DNS name (example.org: exactly that name) or a wildcard (*.example.org: its subdomains only)";
const allowedName = json(z.string().regex(DNS_NAME_OR_WILDCARD, ALLOWED_NAME_HELP), { patternErrorMessage: ALLOWED_NAME_HELP });
const CIDR_OR_ADDRESS_HELP = "must be an IPv4 address or CIDR (a.b.c.d/len, no host bits)";
const cidrOrAddress = json(
  z.string().refine((s) => isIpv4(s) || typeof parseIpv4Cidr(s) !== "string", { message: CIDR_OR_ADDRESS_HELP }),
  { id: "cidr_or_address", pattern: CIDR_OR_ADDRESS_PATTERN, patternErrorMessage: CIDR_OR_ADDRESS_HELP },
);
const PORT_RANGE_HELP = 'must be a port 1-65535 or a range "first-last" such as "8000-8100"';
/** A port (`22`) or an inclusive range (`"8000-8100"`), 1-65535; see ports.ts. */
const portOrRange = json(
  z.union([z.number(), z.string()]).check((ctx) => {
    const r = parsePortRange(ctx.value);
    if (typeof r === "string") ctx.issues.push({ code: "custom", message: r, input: ctx.value });
  }),
  {
    description: "A port (22) or an inclusive range of ports written as a string (\"8000-8100\"), 1-65535",
    anyOf: [
      { type: "integer", minimum: 1, maximum: 65535, description: "A port, 1-65535 (TCP and UDP ports are 16-bit; port 0 is reserved: RFC 793, RFC 768)" },
      { type: "string", pattern: PORT_RANGE_PATTERN, patternErrorMessage: PORT_RANGE_HELP, description: 'A port or an inclusive range "first-last" such as "8000-8100", each 1-65535; the range may not end before it starts (only `netfleet validate` checks that)' },
    ],
  },
);
const proto = z.enum(["tcp", "udp"]);
/** Protocol and ports, the shape of gateway_services and reserved_ports entries. */
export const PortSet = z.strictObject({
  proto: proto.default("tcp").describe("tcp or udp (default tcp)"),
  ports: z.array(portOrRange).min(1).describe('Ports and inclusive ranges, 1-65535: [22, "8000-8100"]; at least one'),
});
const DURATION_HELP = 'must be a duration such as 30m, 12h, 1d or "infinite"';
const duration = json(z.string().regex(/^(?:\d+[smhdw]|infinite)$/, DURATION_HELP), { patternErrorMessage: DURATION_HELP });

const NATS_URL_HELP = "must be nats://host:port or tls://host:port";
/** A NATS server URL; the port 1-65535 (a port of 0 or above 65535 would only fail at connect time, on every host). */
export const NatsUrl = json(
  // The shape first (for its message), then the one NATS URL check (port 1-65535).
  z.string().regex(/^(?:nats|tls):\/\/[A-Za-z0-9.-]+:\d{1,5}$/, { message: NATS_URL_HELP, abort: true }).refine(isNatsUrl, "the port must be 1-65535"),
  { pattern: NATS_URL_PATTERN, patternErrorMessage: `${NATS_URL_HELP}, the port 1-65535` },
);

export const SiteSettings = json(
  z.strictObject({
    name: dnsLabel.describe("Site name, a DNS label; the owner marker on everything netfleet creates (OVS external_ids, nft table, dnsmasq files)"),
    domain: dnsName.describe("DNS suffix: VMs resolve as <vm>.<network>.<domain>"),
    nats: z
      .array(NatsUrl.describe("A NATS server: nats://host:port, or tls://host:port for TLS"))
      .min(1)
      .describe("NATS server URLs the controller and the agents connect to (one server or the members of a cluster); at least one"),
    management: cidr.optional().describe("Management network of the hosts (a.b.c.d/len, host bits zero); no VM network may overlap it, no network reaches it, and every host's address must lie in it. Absent: not checked"),
    upstream_dns: z
      .array(ipv4.describe("A resolver's IPv4 address"))
      .default([])
      .describe("Resolvers dnsmasq on the gateway forwards to for networks with dns: open. Default: none (the backend's own resolv.conf)"),
    egress_deny: z
      .array(cidrOrAddress.describe("An IPv4 address or CIDR (host bits zero)"))
      .default([])
      .describe("Destinations (addresses or CIDRs) no network of the site reaches, whatever its egress; added to the ones always denied: the management network, 169.254.0.0/16 (link-local, cloud metadata), the site's other networks and the backend's external subnets. Default: none"),
    dns_max_ttl: z
      .number()
      .int()
      .min(1)
      .max(86400)
      .default(300)
      .describe("Seconds, 1-86400 (default 300): cap on the TTL dnsmasq caches and hands to VMs (dnsmasq --max-cache-ttl, --max-ttl). An address a VM got from an answer may sit in dnsmasq's cache and then in the VM's for up to this long each"),
    allow_vlan_1: z
      .boolean()
      .default(false)
      .describe("Allow VLAN id 1 for a network (default false). Most switches treat VLAN 1 as the native (untagged) VLAN of a trunk, so its frames leave untagged and mix with the management traffic; set true only when the site's trunks carry VLAN 1 tagged"),
    name_set_timeout: z
      .number()
      .int()
      .min(1)
      .max(604800)
      .default(3600)
      .describe("Seconds, 1-604800 (default 3600): how long an address stays in an allowed name's nft set after dnsmasq last put it there or a connection last used it; at least 2 x dns_max_ttl, so an address a VM still holds from a cached answer is still allowed"),
  }),
  siteRules,
);

export const AllowEntry = json(
  z
    .strictObject({
      to: json(
        z.string().refine((s) => isIpv4(s) || typeof parseIpv4Cidr(s) !== "string", {
          message: "must be an IPv4 address or CIDR",
        }),
        { pattern: CIDR_OR_ADDRESS_PATTERN, patternErrorMessage: CIDR_OR_ADDRESS_HELP },
      )
        .optional()
        .describe("Destination IPv4 address or CIDR (host bits zero). Not inside a block the network never reaches (169.254.0.0/16, the management network, other networks of the site, egress_deny): such an entry could open nothing"),
      name: allowedName
        .optional()
        .describe("Destination DNS name; the addresses dnsmasq answers for it join its nft set. `static.example.org` is exactly that name; `*.example.org` is its subdomains (not example.org itself)"),
      ports: z
        .array(port.describe("A destination port, 1-65535"))
        .min(1, "give at least one port, or leave ports out for every port")
        .optional()
        .describe("Destination ports, 1-65535; every port when absent (an empty list is refused: it would read as none but mean all)"),
      proto: z.enum(["tcp", "udp"]).default("tcp").describe("tcp or udp (default tcp); with ports"),
    })
    .check((ctx) => {
      const hasTo = ctx.value.to !== undefined;
      const hasName = ctx.value.name !== undefined;
      if (hasTo === hasName) {
        ctx.issues.push({ code: "custom", message: "give exactly one of `to` or `name`", input: ctx.value });
      }
    }),
  allowEntryRules,
);

export const VmSpec = json(
  z.strictObject({
    mac: json(z.string().regex(MAC_ADDRESS, "must be a MAC address such as 52:54:00:12:34:56"), { pattern: UNICAST_MAC_PATTERN, patternErrorMessage: "must be a unicast MAC address such as 52:54:00:12:34:56 (the second hex digit even: an odd one marks a multicast address)" })
      .describe("MAC address of the VM's NIC in this network (unicast, e.g. 52:54:00:12:34:56; unique in the site). DHCP leases and the port's anti-spoofing rules key on it; it must match the NIC libvirt gives the VM"),
    ip: ipv4.optional().describe("Static lease (dnsmasq dhcp-host) inside the network's CIDR, outside the DHCP range, not the gateway. Required on a network without DHCP and for a VM with an allow list or a port forward"),
    host: dnsLabel.optional().describe("The vmhost it runs on (used by the lab and placement checks); that host must carry this network"),
    isolated: z.boolean().optional().describe("Overrides the network's isolated_ports for this VM. Default: the network's setting"),
    allow: z.array(AllowEntry.describe("One allowed destination: `to` (address or CIDR) or `name` (DNS name), optionally with ports and proto")).default([]).describe("Egress allow list (networks with egress: allowlist only; the VM needs a static ip). Default: empty, nothing allowed"),
    extra_addresses: z
      .array(ipv4.describe("An IPv4 address inside the network, not the gateway, not in the DHCP range, not another VM's static lease"))
      .default([])
      .describe("Further addresses this VM may send from and answer ARP for (a virtual IP shared with another VM, as keepalived moves it); Neutron's allowed address pairs. Default: none"),
  }),
  vmRules,
);

const forwardFrom = z
  .array(cidrOrAddress.describe("A source IPv4 address or CIDR (host bits zero)"))
  .default([])
  .describe("Source addresses or CIDRs allowed to use the forward; empty or absent: any source");
const forwardForce = z
  .boolean()
  .default(false)
  .describe("true: allow a listen port that is one of the backend's reserved_ports (e.g. its own SSH on 22), which the forward then shadows on the external interfaces. Default false");

export const PortForward = z.strictObject({
  listen: port.describe("Port, 1-65535, on the backend's external interfaces (and, hairpinned, on its addresses from the site's VMs); unique per protocol across the site's forwards"),
  vm: dnsLabel.describe("Target VM in this network; it needs a static ip (use port_ranges to reach DHCP VMs)"),
  port: port.describe("Port on the VM, 1-65535"),
  proto: proto.default("tcp").describe("tcp or udp (default tcp)"),
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
  port: port.describe("Port on every VM, 1-65535 (e.g. 22)"),
  proto: proto.default("tcp").describe("tcp or udp (default tcp)"),
  from: forwardFrom,
  force: forwardForce,
});

export const NetworkSpec = json(
  z.strictObject({
    vlan: z.number().int().min(1, "VLAN id must be 1-4094").max(4094, "VLAN id must be 1-4094").describe("IEEE 802.1Q VLAN id, 1-4094 (0 and 4095 are reserved), unique in the site; also the nflog group of the network's audit records. VLAN 1 only with site allow_vlan_1: true"),
    cidr: json(cidr, {
      pattern: networkCidrPattern(SPECIAL_PURPOSE_BLOCKS.map((b) => b.cidr)),
      patternErrorMessage: `must be an IPv4 network a.b.c.d/len with the host bits zero, overlapping none of the special-purpose blocks ${SPECIAL_PURPOSE_BLOCKS.map((b) => `${b.cidr} (${b.name})`).join(", ")}`,
    }).describe("The network's IPv4 block a.b.c.d/len, host bits zero (10.1.0.0/24); may not overlap another network or the management network, nor a special-purpose block (loopback, link-local, multicast...)"),
    gateway: ipv4.describe("The gateway's address on this network (held by the backend): inside the cidr, not its network or broadcast address, outside the DHCP range"),
    mtu: z
      .number()
      .int()
      .min(68)
      .max(9216)
      .optional()
      .describe("Bytes, 68-9216: MTU of this network's VLAN interfaces, VM bridges and gateway port, announced to VMs by DHCP (option 26). Default: the smallest uplink mtu of the hosts carrying it; may not exceed any of them"),
    dhcp: z
      .union([
        z
          .strictObject({
            start: ipv4.describe("First address of the range dnsmasq leases, inside the network's cidr"),
            end: ipv4.describe("Last address of the range, inside the cidr and not before start"),
            lease_time: duration.default("12h").describe('Lease time: a number with s, m, h, d or w (30m, 12h, 1d), or "infinite" (dnsmasq dhcp-range). Default 12h'),
          })
          .describe("dnsmasq leases start-end (inclusive) to VMs without a static ip"),
        z.literal(false).describe("false: no DHCP on this network"),
      ])
      .optional()
      .describe("DHCP range of dnsmasq on the gateway. false or absent: no DHCP on this network (VMs set their addresses; each VM needs a static ip)"),
    router: z
      .boolean()
      .default(true)
      .describe("Whether DHCP offers the gateway as default route (option 3). Default true. false: no default route from this network, e.g. a VM's second NIC on a storage network"),
    egress: z.enum(["open", "allowlist"]).describe("open: masquerade to anywhere but egress_deny and the always-denied destinations; allowlist: per-VM lists only"),
    dns: z
      .enum(["open", "allowlist"])
      .optional()
      .describe("open: every name resolves; allowlist: only allow-listed and site names resolve. Default: the network's egress"),
    dns_open_with_allowlist: z
      .boolean()
      .default(false)
      .describe("Override (default false): allow dns: open on an egress: allowlist network. Every name then resolves, which makes DNS itself a way out (a DNS tunnel carries data in queries to any domain); only for a network whose VMs are trusted"),
    egress_deny: z
      .array(cidrOrAddress.describe("An IPv4 address or CIDR (host bits zero)"))
      .default([])
      .describe("Destinations (addresses or CIDRs) this network never reaches, added to the site's egress_deny and the always-denied ones. Default: none"),
    gateway_services: z
      .array(PortSet.describe("A protocol and its ports on the gateway address"))
      .default([])
      .describe("Services on the gateway address (the backend) this network's VMs may reach, beyond DHCP, DNS and ICMP echo: [{ proto: tcp, ports: [22, \"8000-8100\"] }]. Default: none"),
    isolated_ports: z.boolean().default(false).describe("VMs talk only to the gateway (private-VLAN-like), not to each other. Default false"),
    dns_names: z
      .array(allowedName.describe("example.org (exactly that name) or *.example.org (its subdomains)"))
      .default([])
      .describe("Extra names every VM of an allowlist network may resolve: `example.org` exactly, `*.example.org` its subdomains. Default: none"),
    vms: z
      .record(json(dnsLabel, { description: "VM name: a lowercase DNS label" }), VmSpec.describe("One VM's NIC in this network"))
      .default({})
      .describe("VMs by name. The same name in two networks is one VM with a NIC in each (distinct MACs); only one of those networks may offer it a default route"),
    port_forwards: z.array(PortForward.describe("One backend port forwarded to a VM's port")).default([]).describe("Backend ports forwarded to one VM each (DNAT). Default: none"),
    port_ranges: z
      .array(PortRangeForward.describe("A block of backend ports, one per address of the network"))
      .default([])
      .describe("Backend port blocks mapped onto every address of the network (listen + host part -> address:port), DHCP VMs included. Default: none"),
    audit: z
      .boolean()
      .default(true)
      .describe("Log new outbound connections and drops at the gateway to nflog group <vlan> (the network's VLAN id, unique per site). Default true; false: no audit records"),
    cluster_groups: z
      .record(
        json(dnsLabel, { description: "Group name: a lowercase DNS label" }),
        json(z.array(dnsLabel.describe("A VM of this network")).min(2, "a cluster group needs two or more VMs"), { uniqueItems: true, description: "Two or more VMs of this network, each once" }),
      )
      .default({})
      .describe("Named groups of this network's VMs that reach each other across hosts even when isolated (e.g. one Slurm cluster); nothing else but the gateway. Default: none"),
  }),
  networkRules,
);

const bondModes = ["active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb", "balance-slb", "balance-tcp"] as const;

export const UplinkSpec = z.strictObject({
  mode: z.enum(["kernel", "ovs-trunk"]).describe("kernel: a Linux bond with 8021q VLAN interfaces (<bond>.<vlan>) under per-network bridges; ovs-trunk: an OVS bond on a trunk bridge with tagged patch ports to each network's bridge"),
  bond: ownInterfaceName.default("bond0").describe("Bond interface name (default bond0), at most 15 bytes (IFNAMSIZ), short enough that <bond>.<vlan> fits too"),
  members: z
    .array(hostInterfaceName.describe("A NIC of the host (e.g. eth0, enp1s0), listed once"))
    .min(1)
    .max(8)
    .describe("The host's NICs in the bond, 1-8; with one member an ovs-trunk uplink is a plain port, no bond"),
  bond_mode: z.enum(bondModes).default("active-backup").describe("Bonding mode (default active-backup). kernel: active-backup, balance-rr, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb (Linux bonding.rst); ovs-trunk: active-backup, balance-slb, balance-tcp (ovs-vswitchd.conf.db(5)). 802.3ad and balance-tcp need LACP on the switch"),
  miimon: z.number().int().min(0).max(10000).default(100).describe("Milliseconds, 0-10000 (default 100): how often the kernel bond checks each member's link (bonding miimon); 0 turns link monitoring off"),
  mtu: z.number().int().min(68).max(9216).default(1500).describe("Bytes, 68-9216 (default 1500): MTU of the bond and its members; no network this host carries may have a larger one"),
  datapath: z.enum(["system", "netdev"]).default("system").describe("OVS datapath type (default system, the kernel datapath); netdev is the userspace datapath"),
  trunk_bridge: ownInterfaceName.default("br-uplink").describe("ovs-trunk mode: the OVS bridge holding the bond (default br-uplink); may not be a name netfleet gives another interface (br-<network>...)"),
  lacp: z
    .enum(["active", "passive", "off"])
    .optional()
    .describe("LACP (IEEE 802.1AX) on the bond. active: send LACPDUs; passive: answer the switch's; off: none. Default: active for bond_mode 802.3ad (kernel) and balance-tcp (ovs-trunk), which need a negotiated LACP aggregate (OVS drops every frame of a balance-tcp bond without it); off otherwise, where it may not be set"),
  carries_management: z
    .boolean()
    .default(false)
    .describe("kernel mode: the host's management address (its `address`, in the site's management network) lives on this bond. The agent then moves it and the routes through it from the member that holds it onto the bond, and undoes the move if the default gateway stops answering. Default false: no bond member may hold an address or the default route (the agent refuses to enslave it)"),
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

const UPLINK_HELP = "The uplink of the host (or of the group's hosts): mode, bond and members, bond mode, LACP, MTU. A host's keys override its groups' key by key; defaults apply after merging";

/** Settings a group gives its hosts and a host may override. */
const hostSettingsShape = {
  role: z.enum(["vmhost", "backend"]).describe("vmhost: runs VMs; backend: the site's one gateway (DHCP, DNS, NAT, firewall, port-forwards for every network)"),
  uplink: UplinkSettings.describe(UPLINK_HELP),
  networks: z.array(json(z.string(), { pattern: NETWORK_NAME.source, description: "A network of this site" })).describe("Networks this host carries (a backend carries all)"),
  labels: z
    .record(
      json(z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, "must be a label key: 1-63 of a-z 0-9 _ . -, starting with a letter or digit"), {
        description: "Label key: 1-63 of a-z 0-9 _ . -, starting with a letter or digit",
        patternErrorMessage: "must be a label key: 1-63 of a-z 0-9 _ . -, starting with a letter or digit",
      }),
      z.string().max(253).describe("Label value, at most 253 characters"),
    )
    .describe("Free-form key: value labels (rack, room...) recorded with the host; nothing reads them yet. A host's labels merge over its groups' key by key"),
  external_interface: hostInterfaceName.describe("backend: interface towards the internet (masquerade, port-forwards); or external_interfaces. Not a bond member, the bond, or an interface netfleet creates"),
  external_interfaces: z
    .array(hostInterfaceName.describe("An interface towards the outside, listed once"))
    .min(1)
    .describe("backend: interfaces towards the outside, when there are several (masquerade and port-forwards on each); not together with external_interface"),
  reserved_ports: z
    .array(PortSet.describe("A protocol and its ports"))
    .describe("backend: its own services on the external interfaces, which no port-forward may shadow unless it says force: true. Default: [{ proto: tcp, ports: [22] }]"),
};

export const GroupSpec = z.strictObject(hostSettingsShape).partial();

export const HostSpec = json(
  z
    .strictObject({
      ...hostSettingsShape,
      uplink: json(UplinkSettings, { ...hostUplinkRules, description: UPLINK_HELP }),
      networks: json(hostSettingsShape.networks, { uniqueItems: true }),
      external_interfaces: json(hostSettingsShape.external_interfaces, { uniqueItems: true }),
      groups: z.array(json(z.string(), { pattern: DNS_LABEL.source, description: "A group of this site" })).describe("Groups whose settings this host takes, in order (later groups win; the host's own keys win over all)"),
      address: ipv4.describe("Management address, inside the site's management network, unique"),
      mac: json(z.string().regex(MAC_ADDRESS), { patternErrorMessage: "must be a MAC address such as 52:54:00:12:34:56" }).describe("Management MAC (aa:bb:cc:dd:ee:ff), to match an enrolling agent; unique"),
    })
    .partial(),
  hostRules,
);

export const InventoryFile = json(
  z.strictObject({
    site: SiteSettings.describe("Site-wide settings; exactly one file of the folder holds them").optional(),
    networks: z
      .record(json(z.string(), { pattern: NETWORK_NAME.source, patternErrorMessage: "network names are 1-12 of a-z 0-9 -, starting with a letter", description: "Network name: 1-12 of a-z 0-9 -, starting with a letter (it becomes br-<name>, pu-<name>, pb-<name>, gw-<name>)" }), NetworkSpec.describe("One VM network: VLAN, addresses, DHCP, egress policy, VMs"))
      .optional()
      .describe("VM networks by name (a name defined once across the folder's files)"),
    groups: z
      .record(json(z.string(), { pattern: DNS_LABEL.source, patternErrorMessage: "group names are lowercase DNS labels (a-z, 0-9, -; at most 63)", description: "Group name: a lowercase DNS label" }), GroupSpec.describe("Settings the group's hosts take unless they set their own"))
      .optional()
      .describe("Host groups by name: shared settings for the hosts that list them"),
    hosts: z
      .record(json(z.string(), { pattern: DNS_LABEL.source, patternErrorMessage: "host names are lowercase DNS labels (a-z, 0-9, -; at most 63)", description: "Host name: a lowercase DNS label" }), HostSpec.describe("One host: its role, uplink, networks, management address"))
      .optional()
      .describe("Hosts by name: the site's vmhosts and its one backend"),
  }),
  inventoryFileRules,
);

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

/**
 * The JSON Schema (draft-07, what yaml-language-server implements) of one
 * inventory file, for editors: every per-file rule a JSON Schema can state
 * (types, ranges, enums, patterns for addresses, CIDRs with host bits,
 * names and ports, strict keys, rules between keys of one object), each
 * field described. Rules across entries or files (overlaps, references,
 * duplicates across networks) stay with `netfleet validate`; the list is in
 * test/unit/json-schema-limits.ts. Pure; throws nothing.
 */
export function inventoryJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(InventoryFile, { io: "input", unrepresentable: "any", target: "draft-07" }) as Record<string, unknown>;
  return {
    ...schema,
    $id: "https://netfleet.dev/schema/inventory.json",
    title: "netfleet inventory file",
    description: "One YAML file of a netfleet site folder (inventories/<site>/*.yaml): any of the sections site, networks, groups, hosts. `netfleet validate <folder>` checks the folder as a whole",
  };
}
