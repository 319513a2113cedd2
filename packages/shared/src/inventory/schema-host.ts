import { z } from "zod";
import { DNS_LABEL, MAC_ADDRESS, NETWORK_NAME } from "../names.ts";
import { hostInterfaceName, ipv4, json, ownInterfaceName, PortSet } from "./schema-fields.ts";
import { hostRules, hostUplinkRules } from "./schema-rules.ts";
import { bitsField } from "./schema-bandwidth.ts";
import { vxlanUplinkShape } from "./schema-vxlan.ts";

/**
 * `groups` and `hosts` entries: a host's role, uplink (bond, members, mode,
 * LACP, MTU), networks, labels, a backend's external interfaces and
 * reserved ports; a group holds the same settings for the hosts that list it.
 */

const bondModes = ["active-backup", "balance-rr", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb", "balance-slb", "balance-tcp"] as const;

/** A host's uplink after its groups' and its own settings are merged: every default applied. */
export const UplinkSpec = z.strictObject({
  mode: z.enum(["kernel", "ovs-trunk", "vxlan"]).describe("kernel: a Linux bond with 8021q VLAN interfaces (<bond>.<vlan>) under per-network bridges; ovs-trunk: an OVS bond on a trunk bridge with tagged patch ports to each network's bridge; vxlan: no VLAN trunk, each network a VXLAN segment (its vni) between the hosts over the underlay (see underlay; RFC 7348): a Linux vxlan device vx-<network> per network, every host in the site in vxlan mode"),
  bond: ownInterfaceName.default("bond0").describe("Bond interface name (default bond0), at most 15 bytes (IFNAMSIZ), short enough that <bond>.<vlan> fits too"),
  members: z
    .array(hostInterfaceName.describe("A NIC of the host (e.g. eth0, enp1s0), listed once"))
    .min(1)
    .max(8)
    .default([])
    .describe("The host's NICs in the bond, 1-8 (required in kernel and ovs-trunk mode; none in vxlan mode); with one member an ovs-trunk uplink is a plain port, no bond"),
  bond_mode: z.enum(bondModes).default("active-backup").describe("Bonding mode (default active-backup). kernel: active-backup, balance-rr, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb (Linux bonding.rst); ovs-trunk: active-backup, balance-slb, balance-tcp (ovs-vswitchd.conf.db(5)). 802.3ad and balance-tcp need LACP on the switch"),
  miimon: z.number().int().min(0).max(10000).default(100).describe("Milliseconds, 0-10000 (default 100): how often the kernel bond checks each member's link (bonding miimon); 0 turns link monitoring off"),
  mtu: z.number().int().min(68).max(9216).default(1500).describe("Bytes, 68-9216 (default 1500): MTU of the bond and its members; no network this host carries may have a larger one. vxlan mode: the underlay's MTU (netfleet does not set it), and no network this host carries may exceed it less 50 bytes (VXLAN over IPv4, RFC 7348)"),
  ...vxlanUplinkShape,
  speed: bitsField("rate").optional().describe("The uplink's line rate in bit/s (10Gbit, 25Gbit; of one member for active-backup): no VM bandwidth rate on this host may exceed it. Absent: not checked"),
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
const UplinkSettings = z.strictObject(
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
    .describe("Key: value labels (rack, room...). Read by netfleet --limit label selectors (rack=a, on rollout, bootstrap, plan, compile, status, show) and by rollout --max-per rack=1 (never two hosts with one value in a wave). A host's labels merge over its groups' key by key"),
  external_interface: hostInterfaceName.describe("backend: interface towards the internet (masquerade, port-forwards); or external_interfaces. Not a bond member, the bond, or an interface netfleet creates"),
  external_interfaces: z
    .array(hostInterfaceName.describe("An interface towards the outside, listed once"))
    .min(1)
    .describe("backend: interfaces towards the outside, when there are several (masquerade and port-forwards on each); not together with external_interface"),
  reserved_ports: z
    .array(PortSet.describe("A protocol and its ports"))
    .describe("backend: its own services on the external interfaces, which no port-forward may shadow unless it says force: true. Default: [{ proto: tcp, ports: [22] }]"),
};

/** A `groups` entry: host settings its hosts take unless they set their own. */
export const GroupSpec = z.strictObject(hostSettingsShape).partial();

/** A `hosts` entry: the group settings plus `groups`, the management `address` and `mac`; everything optional until merged. */
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

// What each schema yields (defaults applied).
export type UplinkSpec = z.output<typeof UplinkSpec>;
export type GroupSpec = z.output<typeof GroupSpec>;
export type HostSpec = z.output<typeof HostSpec>;

/**
 * The LACP setting an uplink runs with: its `lacp`, else `active` for the
 * bond modes that need a negotiated aggregate (kernel 802.3ad, OVS
 * balance-tcp: ovs-vswitchd.conf.db(5) says a balance-tcp bond without LACP
 * falls back, and in practice the switch side drops its frames), else `off`.
 */
export function uplinkLacp(up: Pick<UplinkSpec, "lacp" | "bond_mode">): "active" | "passive" | "off" {
  return up.lacp ?? (up.bond_mode === "802.3ad" || up.bond_mode === "balance-tcp" ? "active" : "off");
}
