import { z } from "zod";
import { MAC_ADDRESS } from "../names.ts";
import { isIpv4, parseIpv4Cidr } from "../ipv4.ts";
import { CIDR_OR_ADDRESS_PATTERN, networkCidrPattern, UNICAST_MAC_PATTERN } from "./schema-patterns.ts";
import { allowedName, cidr, CIDR_OR_ADDRESS_HELP, cidrOrAddress, dnsLabel, duration, ipv4, json, port, PortSet, proto } from "./schema-fields.ts";
import { SPECIAL_PURPOSE_BLOCKS } from "./check-addresses.ts";
import { allowEntryRules, networkRules, vmRules } from "./schema-rules.ts";
import { vxlanNetworkShape } from "./schema-vxlan.ts";
import { BandwidthSpec } from "./schema-bandwidth.ts";

/**
 * A `networks` entry: VLAN, addresses, DHCP, egress and DNS policy, and
 * its VMs (MAC, static lease, allow list, extra addresses), port forwards
 * and cluster groups.
 */

/** One allow-list entry of a VM: a destination `to` (address or CIDR) or `name` (DNS name), with optional ports and proto. */
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

/** A VM's NIC in one network: MAC, static lease, host, isolation, allow list, extra addresses. */
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
    profile: dnsLabel.optional().describe("The profile (site `profiles:`) this VM takes its policy from; its own keys override the profile's key by key, and only keys the profile has. Default: the network's profile, if any"),
    cluster_groups: json(z.array(dnsLabel.describe("A cluster group of this network")).min(1), { uniqueItems: true }).optional().describe("Cluster groups of this network the VM joins, beside those that list it in the network's cluster_groups"),
    gateway_services: z.array(PortSet.describe("A protocol and its ports on the gateway address")).optional().describe("Services on the gateway address this VM may reach beyond its network's gateway_services (needs a static ip)"),
    bandwidth: BandwidthSpec.optional(),
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

/** One backend port forwarded to one VM's port (DNAT). */
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

/** One VM network as written: VLAN, CIDR, gateway, MTU, DHCP, egress and DNS policy, VMs, forwards, audit, cluster groups. */
export const NetworkSpec = json(
  z.strictObject({
    vlan: z.number().int().min(1, "VLAN id must be 1-4094").max(4094, "VLAN id must be 1-4094").describe("IEEE 802.1Q VLAN id, 1-4094 (0 and 4095 are reserved), unique in the site; also the nflog group of the network's audit records. VLAN 1 only with site allow_vlan_1: true"),
    ...vxlanNetworkShape,
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
    profile: dnsLabel.optional().describe("The default profile (site `profiles:`) of this network's VMs: a VM naming no profile takes this one"),
  }),
  networkRules,
);

// What each schema yields (defaults applied): the types the loader and compiler read.
export type AllowEntry = z.output<typeof AllowEntry>;
export type VmSpec = z.output<typeof VmSpec>;
export type PortForward = z.output<typeof PortForward>;
export type PortRangeForward = z.output<typeof PortRangeForward>;
export type NetworkSpec = z.output<typeof NetworkSpec>;
