import { z } from "zod";
import { VmBandwidthSpec } from "./assignment-bandwidth.ts";
import { canonicalJson, sha256Hex } from "./canonical.ts";
import { DecodeError } from "./errors.ts";
import { OvsMirrorSpec } from "./assignment-mirror.ts";
import { OvsSamplingSpec } from "./assignment-sampling.ts";
import { Ipv4Address, Ipv4Interface } from "./ipv4.ts";
import { DNS_LABEL, INTERFACE_NAME, MAC_ADDRESS, NETWORK_NAME } from "./names.ts";
import { parseJson } from "./protocol/messages.ts";
import { VxlanInterfaceSpec } from "./assignment-vxlan.ts";
import { PROTOCOL_VERSION, parseFromPeer, parseProtocolVersion, type ProtocolVersion } from "./protocol/version.ts";

/**
 * The desired state of one host: an ordered list of resources (dependencies
 * first). The controller compiles it from the inventory; the agent decodes it
 * with these schemas at its boundary and reconciles the host to it.
 */

const ifname = z.string().regex(INTERFACE_NAME);
/** An interface address a.b.c.d/len (ipv4.ts: octets 0-255, len 0-32). */
const cidrAddress = Ipv4Interface;
/** A dotted-quad IPv4 address (ipv4.ts: octets 0-255, no short forms). */
const ipv4 = Ipv4Address;
/** A destination or source: one address, or a block a.b.c.d/len. */
const cidrOrAddress = z.string().refine((t) => Ipv4Address.safeParse(t).success || Ipv4Interface.safeParse(t).success, "must be an IPv4 address a.b.c.d or a.b.c.d/len (octets 0-255, len 0-32)");

/** A Linux bond (ip link type bond) over `members`, with its mode, MII monitoring interval (ms) and MTU. */
export const KernelBondSpec = z.strictObject({
  kind: z.literal("kernel-bond"),
  name: ifname,
  mode: z.enum(["active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"]),
  members: z.array(ifname).min(1),
  miimon: z.number().int().min(0),
  mtu: z.number().int().min(68).max(9216),
  /**
   * 802.3ad only: whether the bond sends LACPDUs unasked (`lacp_active on`,
   * the kernel's default) or only answers the partner's (`off`). Linux
   * bonding driver, ip-link(8) `lacp_active`.
   */
  lacpActive: z.boolean().optional(),
  /**
   * The host's management address moves onto this bond: `address` (a.b.c.d/len)
   * is taken from the member that holds it, with the routes through that
   * member (the default route among them), under the engine's local lockout
   * check. Absent: a member holding an IPv4 address or the default route is
   * refused.
   */
  management: z.strictObject({ address: cidrAddress }).optional(),
});

/** An 802.1Q VLAN interface `name` on `parent` (ip link type vlan id `vlan`). */
export const VlanInterfaceSpec = z.strictObject({
  kind: z.literal("vlan-interface"),
  name: ifname,
  parent: ifname,
  vlan: z.number().int().min(1).max(4094),
  mtu: z.number().int().min(68).max(9216),
});

/** The IPv4 addresses (and optionally the MAC) of an interface we own. */
export const InterfaceAddressSpec = z.strictObject({
  kind: z.literal("interface-address"),
  name: ifname,
  /** Exactly these IPv4 addresses (a.b.c.d/len) on an interface we own; the link is brought up. */
  addresses: z.array(cidrAddress),
  mac: z.string().regex(MAC_ADDRESS).optional(),
});

/** One port of an OVS bridge: a NIC (system), an internal port, a patch port to `peer`, or a bond of `members`. */
export const OvsPortSpec = z.strictObject({
  name: ifname,
  type: z.enum(["system", "internal", "patch", "bond"]),
  tag: z.number().int().min(1).max(4094).optional(),
  trunks: z.array(z.number().int().min(1).max(4094)).optional(),
  peer: ifname.optional(),
  members: z.array(ifname).optional(),
  bond_mode: z.enum(["active-backup", "balance-slb", "balance-tcp"]).optional(),
  /** OVS Port `lacp` column (ovs-vswitchd.conf.db(5)): active, passive or off; bonds only. */
  lacp: z.enum(["active", "passive", "off"]).optional(),
  mac: z.string().regex(MAC_ADDRESS).optional(),
  /**
   * mtu_request of the port's interfaces: a bond's members, a system NIC, an
   * internal port. Patch ports have no MTU (frames of any size cross them).
   */
  mtu: z.number().int().min(68).max(9216).optional(),
}).check((ctx) => {
  const p = ctx.value;
  if (p.type === "bond" && (p.members?.length ?? 0) < 2) ctx.issues.push({ code: "custom", message: "an OVS bond needs two or more members", input: p, path: ["members"] });
  if (p.type === "patch" && p.peer === undefined) ctx.issues.push({ code: "custom", message: "a patch port needs a peer", input: p, path: ["peer"] });
  if (p.type === "patch" && p.mtu !== undefined) ctx.issues.push({ code: "custom", message: "a patch port has no MTU", input: p, path: ["mtu"] });
});

/** An OVS bridge with exactly these ports (ovs-vsctl), on the kernel (system) or userspace (netdev) datapath. */
export const OvsBridgeSpec = z.strictObject({
  kind: z.literal("ovs-bridge"),
  name: ifname,
  datapath: z.enum(["system", "netdev"]),
  ports: z.array(OvsPortSpec),
  /**
   * mtu_request of the bridge's own internal port. OVS sizes that port to the
   * smallest MTU of the bridge's other ports, and patch ports have none: a
   * VM bridge behind a patch port stays at 1500 unless asked (and libvirt
   * gives the taps it plugs the MTU of their bridge).
   */
  mtu: z.number().int().min(68).max(9216).optional(),
  /**
   * OVS fail mode (ovs-vswitchd.conf.db(5), Bridge fail_mode). `secure`: the
   * bridge forwards nothing but what its OpenFlow table says, also before
   * the agent has installed a rule and after ovs-vswitchd restarts (flows are
   * not persistent). Absent: OVS's default (`standalone`, a NORMAL switch).
   * Set in the same ovs-vsctl transaction that creates the bridge.
   */
  failMode: z.enum(["secure", "standalone"]).optional(),
});

/** A libvirt network bridged onto an OVS bridge, with its portgroups (VLAN tags come from the OVS side). */
export const LibvirtNetworkSpec = z.strictObject({
  kind: z.literal("libvirt-network"),
  name: z.string().regex(NETWORK_NAME),
  bridge: ifname,
  portgroups: z.array(
    z.strictObject({
      name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
      default: z.boolean(),
      /**
       * libvirt `<virtualport type='openvswitch'><parameters profileid=.../>`:
       * libvirt copies it into the OVS Interface's `external_ids:port-profile`,
       * where the agent reads it (e.g. `netfleet-isolated`).
       */
      profileId: z.string().regex(/^[a-z][a-z0-9-]{0,39}$/).optional(),
    }),
  ),
});

/** One kernel parameter (sysctl -w name=value); value in decimal. */
export const SysctlSpec = z.strictObject({
  kind: z.literal("sysctl"),
  name: z.string().regex(/^[a-z0-9_]+(?:\.[a-z0-9_]+)+$/),
  value: z.string().regex(/^[0-9]+$/),
});

/**
 * OpenFlow rules for the VM ports of one bridge: anti-spoofing (the VM's
 * MAC, and its IP when known) and private-VLAN-like isolation (talk to the
 * gateway only). Ports are found live: any Interface carrying libvirt's
 * `external_ids:attached-mac`.
 */
export const VmPortPolicySpec = z.strictObject({
  kind: z.literal("vm-port-policy"),
  name: ifname,
  network: z.string().regex(NETWORK_NAME),
  /** The port towards the gateway: the VLAN interface or the patch port. */
  uplinkPort: ifname,
  gateway: z.strictObject({ ip: ipv4, mac: z.string().regex(MAC_ADDRESS) }),
  isolatedDefault: z.boolean(),
  cookie: z.string().regex(/^0x[0-9a-f]{16}$/),
  /**
   * The backend host whose published DHCP leases pin the addresses of VM
   * ports (any VM without a static ip, and a static VM's previous address
   * until its lease ends). The agent keeps them in
   * `<runDir>/leases/<network>.json`.
   */
  leaseSource: z.string().regex(DNS_LABEL).optional(),
  /** `external_ids:port-profile` value that makes a port isolated whatever the inventory says. */
  isolatedProfile: z.string().regex(/^[a-z][a-z0-9-]{0,39}$/).optional(),
  vms: z.array(
    z.strictObject({
      name: z.string().regex(DNS_LABEL),
      mac: z.string().regex(MAC_ADDRESS),
      ip: ipv4.optional(),
      isolated: z.boolean(),
      /** Further addresses the VM may use (a virtual IP that moves between VMs), with their ARP. */
      extraAddresses: z.array(ipv4).optional(),
      /** Cluster groups of the network this VM belongs to: members reach each other even when isolated. */
      groups: z.array(z.string().regex(DNS_LABEL)).optional(),
      /** Bandwidth limits (protocol 1.3, optional): egress = what the VM sends, ingress = what it receives (assignment-bandwidth.ts). */
      bandwidth: VmBandwidthSpec.optional(),
    }),
  ),
});

/**
 * A DNS name a network's VMs may resolve. `name` is either an exact name
 * (`static.example.org`: that name only) or a wildcard (`*.example.org`:
 * its subdomains, not the name itself). With `set`, the addresses dnsmasq
 * answers for it join that nft set (dnsmasq(8) --nftset).
 */
export const AllowedName = z.strictObject({
  name: z.string().regex(/^(?:\*\.)?[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$/),
  set: z.string().regex(/^[a-z0-9_]+$/).optional(),
});

/** One DHCP/DNS service per network on the backend, supervised by the agent. */
export const DnsmasqSpec = z.strictObject({
  kind: z.literal("dnsmasq"),
  name: z.string().regex(NETWORK_NAME),
  interface: ifname,
  address: ipv4,
  netmask: ipv4,
  domain: z.string().regex(/^[a-z0-9.-]+$/),
  /** Absent: no DHCP on this network (dnsmasq serves DNS only). */
  dhcp: z.strictObject({ start: ipv4, end: ipv4, leaseTime: z.string().regex(/^(?:\d+[smhdw]|infinite)$/) }).optional(),
  /**
   * Whether DHCP offers the gateway as default route (RFC 2132 option 3).
   * false: no router option at all (dnsmasq sends none for an
   * `option:router` given without a value, dnsmasq(8) --dhcp-option).
   */
  router: z.boolean(),
  /** Interface MTU announced by DHCP (RFC 2132 option 26, dnsmasq `option:mtu`), bytes. */
  mtu: z.number().int().min(68).max(9216),
  /** Static leases and names: a VM without ip gets its name only. */
  hosts: z.array(z.strictObject({ name: z.string().regex(DNS_LABEL), mac: z.string().regex(MAC_ADDRESS), ip: ipv4.optional() })),
  dns: z.enum(["open", "allowlist"]),
  upstream: z.array(ipv4),
  /** allowlist networks: names that resolve (through the upstream), and the nft set their addresses join. */
  allowNames: z.array(AllowedName),
  /**
   * Cap, in seconds, on the TTL dnsmasq caches and hands to VMs (dnsmasq(8)
   * --max-cache-ttl, --max-ttl). The name sets' element timeout is set well
   * above it, so an address a VM holds from an answer is still in the set.
   */
  maxTtl: z.number().int().min(1).max(86400),
});

/** Egress rule of one VM: a destination (address/CIDR, or a DNS name's set) and ports. */
const EgressRule = z.strictObject({
  vm: ipv4,
  to: cidrOrAddress.optional(),
  set: z.string().regex(/^[a-z0-9_]+$/).optional(),
  proto: z.enum(["tcp", "udp"]),
  ports: z.array(z.number().int().min(1).max(65535)).optional(),
});

/** A port or an inclusive port range (`first` <= `last`), 1-65535. */
const PortRange = z.strictObject({ first: z.number().int().min(1).max(65535), last: z.number().int().min(1).max(65535) });

/**
 * A port-forward on the backend (DNAT, like Neutron floating-IP port
 * forwarding): `count` consecutive ports from `listen` map onto `count`
 * consecutive VM addresses from `vm`, each at `port`. `count: 1` is one VM.
 * `from` limits the sources (empty: any). Reached on every external
 * interface and, hairpinned, from the site's VMs at the backend's own
 * addresses.
 */
const ForwardSpec = z.strictObject({
  proto: z.enum(["tcp", "udp"]),
  listen: z.number().int().min(1).max(65535),
  count: z.number().int().min(1).max(65535),
  vm: ipv4,
  port: z.number().int().min(1).max(65535),
  /** The gateway interface of the VMs' network. */
  interface: ifname,
  from: z.array(cidrOrAddress),
});

/** The backend's firewall and NAT: one table of ours, `inet netfleet`. */
export const NftTableSpec = z.strictObject({
  kind: z.literal("nft-table"),
  name: z.literal("netfleet"),
  /** Interfaces towards the outside (masquerade, port-forwards); one or more. */
  externalInterfaces: z.array(ifname).min(1),
  networks: z.array(
    z.strictObject({
      name: z.string().regex(NETWORK_NAME),
      interface: ifname,
      cidr: cidrOrAddress,
      gateway: ipv4,
      egress: z.enum(["open", "allowlist"]),
      /**
       * Destinations this network never reaches, whatever its egress: the
       * management network, link-local (169.254.0.0/16, cloud metadata), the
       * site's other networks, and the inventory's `egress_deny`. The agent
       * adds the external interfaces' own subnets, which it reads live.
       */
      deny: z.array(cidrOrAddress),
      /** Services on the gateway address the network's VMs may reach, beyond DHCP, DNS and ICMP echo. */
      services: z.array(z.strictObject({ proto: z.enum(["tcp", "udp"]), ports: PortRange })),
      /**
       * Services on the gateway address one VM may reach beyond the network's, matched by its
       * address (which the VM port's anti-spoofing guarantees): a profile's or the VM's own
       * gateway_services. Optional (protocol 1.3); an agent that ignores it keeps them closed.
       */
      vmServices: z.array(z.strictObject({ vm: ipv4, proto: z.enum(["tcp", "udp"]), ports: PortRange })).optional(),
      /**
       * nflog group (nft `log group`) of this network's audit records: new
       * outbound connections and drops at the gateway. Absent: no audit.
       */
      auditGroup: z.number().int().min(1).max(65535).optional(),
    }),
  ),
  allow: z.array(EgressRule),
  /** nft sets dnsmasq fills from allowed names (`type ipv4_addr; flags timeout, dynamic`). */
  dnsSets: z.array(z.string().regex(/^[a-z0-9_]+$/)),
  /** Element timeout of the name sets, seconds; refreshed on each new connection that uses an element. */
  dnsSetTimeout: z.number().int().min(1).max(604800),
  forwards: z.array(ForwardSpec),
});

/**
 * Removes what carries our owner marker and is no longer desired: whatever
 * is not kept goes. `dnsmasq` and `nftTable` left out keep nothing, as an
 * empty list does (the planner always writes them).
 */
export const PruneSpec = z.strictObject({
  kind: z.literal("prune"),
  name: z.literal("host"),
  keep: z.strictObject({
    links: z.array(ifname),
    ovsBridges: z.array(ifname),
    /** Also the libvirt XML files the agent wrote for them (<runDir>/libvirt/<net>.xml). */
    libvirtNetworks: z.array(z.string()),
    /** Networks whose dnsmasq (process and files in <runDir>/dnsmasq) stays. */
    dnsmasq: z.array(z.string().regex(NETWORK_NAME)),
    /** Whether the table `inet netfleet` stays (the host holds the gateway role). */
    nftTable: z.boolean(),
    /** Names of our OVS Mirror rows that stay (they have an ovs-mirror resource), with their mr-<name> tunnel ports; absent: mirrors are not looked at. */
    ovsMirrors: z.array(z.string().regex(NETWORK_NAME)).optional(),
    /** Bridges whose sFlow/IPFIX rows of ours stay (they have an ovs-sampling resource); absent: none. */
    sampling: z.array(ifname).optional(),
  }),
});

/** Any resource of an assignment, by its `kind`. A kind this peer does not know is refused, whatever the minor. */
export const ResourceSpec = z.discriminatedUnion("kind", [
  KernelBondSpec,
  VlanInterfaceSpec,
  InterfaceAddressSpec,
  OvsBridgeSpec,
  LibvirtNetworkSpec,
  SysctlSpec,
  VmPortPolicySpec,
  DnsmasqSpec,
  NftTableSpec,
  OvsMirrorSpec,
  OvsSamplingSpec,
  PruneSpec,
  VxlanInterfaceSpec,
]);

/** The desired state of one host (see the top of this file); `apiVersion` names the document schema, the envelope's `protocol` the wire. */
export const HostAssignment = z.strictObject({
  apiVersion: z.literal("netfleet.dev/v1"),
  kind: z.literal("HostAssignment"),
  site: z.string().regex(DNS_LABEL),
  host: z.string().regex(DNS_LABEL),
  role: z.enum(["vmhost", "backend"]),
  /** sha256 of the canonical JSON of everything else. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  resources: z.array(ResourceSpec),
});

export type KernelBondSpec = z.output<typeof KernelBondSpec>;
export type VlanInterfaceSpec = z.output<typeof VlanInterfaceSpec>;
export type InterfaceAddressSpec = z.output<typeof InterfaceAddressSpec>;
export type OvsPortSpec = z.output<typeof OvsPortSpec>;
export type OvsBridgeSpec = z.output<typeof OvsBridgeSpec>;
export type LibvirtNetworkSpec = z.output<typeof LibvirtNetworkSpec>;
export type SysctlSpec = z.output<typeof SysctlSpec>;
export type VmPortPolicySpec = z.output<typeof VmPortPolicySpec>;
export type DnsmasqSpec = z.output<typeof DnsmasqSpec>;
export type NftTableSpec = z.output<typeof NftTableSpec>;
export type EgressRule = z.output<typeof EgressRule>;
export type ForwardSpec = z.output<typeof ForwardSpec>;
export type AllowedName = z.output<typeof AllowedName>;
export type PruneSpec = z.output<typeof PruneSpec>;
export type ResourceSpec = z.output<typeof ResourceSpec>;
export type HostAssignment = z.output<typeof HostAssignment>;

/** A resource's id in reports and logs: `kind[name]`. */
export function resourceId(r: { kind: string; name: string }): string {
  return `${r.kind}[${r.name}]`;
}

/** Builds the document and stamps its content hash. */
export function sealAssignment(doc: Omit<HostAssignment, "hash">): HostAssignment {
  const { hash: _drop, ...body } = doc as HostAssignment;
  return { ...body, hash: sha256Hex(canonicalJson(body)) };
}

/**
 * Decodes an assignment file (`netfleet compile` output, `netfleet-agent
 * apply FILE`): read as this peer's protocol, so a field it does not know is
 * refused. @throws DecodeError for a bad or tampered document.
 */
export function decodeAssignment(source: string, text: string): HostAssignment {
  return decodeAssignmentValue(source, parseJson(source, text), parseProtocolVersion(PROTOCOL_VERSION)!);
}

/**
 * Decodes an assignment parsed from JSON, sent by a peer of version
 * `sender` (see version.ts). The content hash is checked over the document
 * as received, so fields a newer minor added count. The result is zod's
 * checked output: only the fields this code knows, in the schema's key
 * order, whatever the sender's order, because resources compare parts of
 * their spec as JSON text (libvirt-network's port groups) and would see a
 * change on every pass. Who needs the bytes as received (the envelope's
 * signature, the agent's checkpoint) keeps `value` itself (signing.ts).
 * @throws DecodeError for a document that does not fit, or whose hash does not match.
 */
export function decodeAssignmentValue(source: string, value: unknown, sender: ProtocolVersion): HostAssignment {
  const parsed = parseFromPeer(HostAssignment, value, sender);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DecodeError(source, issue.path.join("."), issue.message);
  }
  const { hash, ...body } = value as Record<string, unknown>;
  if (sha256Hex(canonicalJson(body)) !== hash) {
    throw new DecodeError(source, "hash", "content hash does not match the document");
  }
  return parsed.data;
}
