/**
 * Names that reach system commands. Each pattern is a whitelist: nothing
 * outside it can become part of an argv, so no name can smuggle an option,
 * a path or whitespace into a command.
 */

/** Linux allows 15 bytes (IFNAMSIZ - 1) for an interface name. */
export const IFNAME_MAX = 15;

/** Interface names: letters, digits, `_`, `-`, `.`; must not start with `-` or `.`. */
export const INTERFACE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** Network names become `br-<name>`, `pu-<name>`, `pb-<name>`, `gw-<name>`: at most 12 characters. */
export const NETWORK_NAME = /^[a-z][a-z0-9-]{0,11}$/;

/** Host, VM, group and site names: DNS labels. */
export const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A DNS name made of labels, e.g. `pypi.org` or `fleet.example`. */
export const DNS_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * An allow-listed DNS name: a plain name (`static.example.org`: exactly that
 * name) or a wildcard (`*.example.org`: its subdomains, not the name
 * itself). A wildcard needs two or more labels after `*.` (no `*.org`).
 */
export const DNS_NAME_OR_WILDCARD = new RegExp(`^(?:\\*\\.(?=[^.]+\\.))?${DNS_NAME.source.slice(1)}`);

/** Unicast MAC address, lower or upper case hex with colons. */
export const MAC_ADDRESS = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

/** Whether `mac` is a MAC address whose first octet has the multicast bit clear. */
export function isUnicastMac(mac: string): boolean {
  return MAC_ADDRESS.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

/** The OVS bridge of a network: `br-<network>`. */
export function bridgeName(network: string): string {
  return `br-${network}`;
}

/** A kernel-mode VLAN interface on the bond: `<bond>.<vlan>`. */
export function vlanInterfaceName(bond: string, vlan: number): string {
  return `${bond}.${vlan}`;
}

/** Patch port on the trunk bridge (uplink side) and on the network bridge (bridge side). */
export function patchPortNames(network: string): { uplink: string; bridge: string } {
  return { uplink: `pu-${network}`, bridge: `pb-${network}` };
}

/** Tagged OVS internal port holding a gateway address in ovs-trunk mode. */
export function gatewayPortName(network: string): string {
  return `gw-${network}`;
}

/**
 * Keywords of the iproute2 commands a user-given interface name reaches
 * (`ip link add|set|del`, `ip addr add|del`), from iproute2 v7.1.0-55
 * (commit ee2a4a86): ip/iplink.c `iplink_parse()` and ip/ipaddress.c
 * `ipaddr_modify()` plus its `ifa_flag_data[]` flag names. Values of
 * keywords (`on`, `off`, `+`, `-`) are left out.
 *
 * iproute2 compares many of them with `matches()` (lib/utils.c), which
 * accepts ANY PREFIX of the keyword: `h` is `help`, `mast` is `master`,
 * `t` is `type`. A name in a keyword's place is then read as that option.
 * The others use `strcmp()`, but releases have moved keywords between the
 * two (and `matches_warn()` shows prefix matching is still being phased
 * out), so a name equal to or a prefix of any of them is refused.
 */
export const IPROUTE2_KEYWORDS: readonly string[] = [
  // ip/iplink.c iplink_parse(): matches() (prefix)
  "address", "addrgenmode", "alias", "broadcast", "dynamic", "help", "link", "link-netns", "link-netnsid",
  "master", "nomaster", "numrxqueues", "numtxqueues", "txqlen", "txqueuelen", "type",
  // ip/iplink.c iplink_parse(): strcmp() (exact)
  "allmulticast", "arp", "brd", "carrier", "dev", "down", "gro_ipv4_max_size", "gro_max_size", "group",
  "gso_ipv4_max_size", "gso_max_segs", "gso_max_size", "index", "inet", "mode", "mtu", "multicast", "name",
  "netns", "parentdev", "promisc", "protodown", "protodown_reason", "qlen", "state", "trailers", "up", "vf",
  "vrf", "xdp", "xdpdrv", "xdpgeneric", "xdpoffload",
  // ip/ipaddress.c ipaddr_modify(): matches() (prefix)
  "metric", "preference", "preferred_lft", "priority", "valid_lft",
  // ip/ipaddress.c ipaddr_modify(): strcmp() (exact), and the ifa_flag_data[] flags
  "anycast", "label", "local", "peer", "proto", "remote", "scope",
  "secondary", "temporary", "nodad", "optimistic", "dadfailed", "home", "deprecated", "tentative",
  "permanent", "mngtmpaddr", "noprefixroute", "autojoin", "stable-privacy",
];

/**
 * The iproute2 keyword `name` would be taken for (it equals the keyword or
 * is a prefix of it), or undefined. Case-sensitive, as iproute2 compares.
 */
export function iproute2Keyword(name: string): string | undefined {
  return IPROUTE2_KEYWORDS.find((k) => k.startsWith(name));
}

/**
 * Names the hypervisor stack gives the interfaces it creates at run time,
 * each with who creates it: libvirt names a VM NIC's tap `vnet<N>` and a
 * macvtap NIC `macvtap<N>` (src/util/virnetdevtap.c, virnetdevmacvlan.c),
 * its NAT networks' bridges `virbr<N>` (the default network is virbr0) with
 * the dummy tap `virbr<N>-nic` (older releases); OVS creates `ovs-netdev`
 * for the userspace datapath (as `ovs-system` for the kernel one); the
 * bonding driver puts its control file `bonding_masters` in
 * /sys/class/net, where no interface of that name can then appear. A bond,
 * member, trunk bridge or external interface under such a name would be (or
 * become) that device: a member `vnet0` would put a VM's tap on the trunk
 * as soon as libvirt creates it.
 */
export const HYPERVISOR_NAMES: readonly { pattern: RegExp; example: string; what: string }[] = [
  { pattern: /^vnet\d+$/, example: "vnet<N>", what: "the tap libvirt creates for a VM's NIC" },
  { pattern: /^macvtap\d+$/, example: "macvtap<N>", what: "the macvtap device libvirt creates for a VM's NIC" },
  { pattern: /^virbr\d+$/, example: "virbr<N>", what: "the bridge of a libvirt NAT network (virbr0 is libvirt's default network)" },
  { pattern: /^virbr\d+-nic$/, example: "virbr<N>-nic", what: "the dummy tap libvirt adds to the bridge of its NAT network" },
  { pattern: /^ovs-netdev$/, example: "ovs-netdev", what: "the interface of OVS's userspace datapath" },
  { pattern: /^bonding_masters$/, example: "bonding_masters", what: "the bonding driver's control file in /sys/class/net (no interface can take its name)" },
];

/** Which hypervisor-created interface `name` would be (see HYPERVISOR_NAMES), or undefined. */
export function hypervisorName(name: string): { example: string; what: string } | undefined {
  return HYPERVISOR_NAMES.find((h) => h.pattern.test(name));
}
