/**
 * Bad-inventory cases (test/unit/bad-inventories/<case>) that the inventory
 * JSON Schema does not refuse, each with the reason no per-file JSON Schema
 * can: a JSON Schema sees one file at a time, compares a value only with
 * constants (never with another value), and cannot follow a name to what it
 * names. `netfleet validate` refuses all of them. json-schema.test.ts checks
 * that every case listed here really passes the schema (so a case the schema
 * learns to refuse must leave the list) and every case not listed fails it.
 */

const OTHER_FILE = "needs a section of another file (the site's settings, the networks or the hosts)";
const ACROSS_ENTRIES = "compares entries with each other (duplicates, overlaps, counts across networks, hosts or forwards)";
const BETWEEN_VALUES = "compares one value with another (an address with the network's CIDR or DHCP range, a port block with the CIDR's size, one number or name with another key's)";
const REFERENCE = "a name must name something defined elsewhere (a network, group, host or VM)";
const FROM_GROUPS = "the host may take the missing or conflicting key from its groups, which a schema cannot merge in";
const GENERATED_NAMES = "the name is one netfleet reserves on every host: br-, pu-, pb-, gw-<network> and <bond>.<vlan> for the site's networks and VLAN ids (another section), and the host's trunk bridge (default br-uplink, which its groups may change)";
const SERVER_BLOCKS = "upstream_dns and a NATS URL's host take any IPv4 address in the schema; the special-purpose blocks are refused there by validate only (a per-field pattern could express it; not generated yet)";
const HYPERVISOR = "a name libvirt, OVS or the bonding driver creates at run time (HYPERVISOR_NAMES in names.ts: vnet<N>, macvtap<N>, virbr<N>, virbr<N>-nic, ovs-netdev, bonding_masters); the schema's interface-name patterns refuse only the iproute2 keywords, lo and ovs-system: a per-field pattern could express it, not generated yet";
const FOLDER = "about the folder, not the content of a file";

/** Cases beyond a per-file JSON Schema, with why. */
export const NOT_IN_SCHEMA: Record<string, string> = {
  "mirror-destination-other-network": `${OTHER_FILE}: the destination VM's network (networks)`,
  "mirror-source-other-network": `${OTHER_FILE}: the source VMs' network (networks)`,
  "mirror-unknown-network": `${OTHER_FILE}: networks`,
  "mirror-remote-ip-in-network": `${OTHER_FILE}: the VM networks' CIDRs`,
  "mirror-destination-is-source": "within one entry, but a list compared with a value: JSON Schema cannot say 'destination.vm is not one of vms'",
  "profile-burst-below-mtu": `${OTHER_FILE}: the network's mtu (or its hosts' uplink mtu) against the profile's burst`,
  "profile-gateway-services-dhcp-vm": `${OTHER_FILE}: the profile is in another file than the VM that has no static ip`,
  "profile-override-missing-key": `${REFERENCE}: the keys of the profile the VM names`,
  "profile-rate-beyond-uplink": `${OTHER_FILE}: the hosts' uplink speed`,
  "profile-unknown": REFERENCE,
  "profile-unknown-network-default": REFERENCE,
  "vm-bandwidth-burst-below-mtu": BETWEEN_VALUES,
  "profile-allow-on-open-network": `${OTHER_FILE}: the egress of the network whose default the profile is`,
  "profile-extra-address-outside": `${OTHER_FILE}: the CIDR of the VM's network`,
  "sampling-collector-in-vm-network": `${OTHER_FILE}: the VM networks' CIDRs`,
  "sampling-collector-loopback": "an address class (loopback, link-local, multicast, reserved) that a dotted-quad pattern does not spell out; the loader refuses it by ipaddr.js's range",
  "sampling-collector-twice": `${ACROSS_ENTRIES}: the same collector twice in one list (uniqueItems cannot compare 10.0.0.1 with 10.0.0.1:6343)`,
  "profile-defined-twice": `${ACROSS_ENTRIES}: the same profile name in two files`,
  "backend-missing-network": `${OTHER_FILE}: the backend must list every network of the site`,
  "vxlan-vni-clash": `${ACROSS_ENTRIES}: a VNI used by two networks`,
  "vxlan-vni-clashes-vlan": `${ACROSS_ENTRIES}: a vni equal to another network's vlan id (its default vni)`,
  "vxlan-mixed-modes": `${ACROSS_ENTRIES}: one host in mode vxlan, another not`,
  "vxlan-mtu-too-large": `${OTHER_FILE}: the carrying hosts' uplink mode and mtu (vxlan: 50 bytes less)`,
  "vxlan-no-underlay-address": `${FROM_GROUPS}: address or uplink.underlay_address`,
  "vxlan-underlay-address-clash": ACROSS_ENTRIES,
  "bond-vlan-name-too-long": `${OTHER_FILE}: <bond>.<vlan> needs the bond (hosts) and the VLAN ids (networks)`,
  "carries-management-without-site-management": `${OTHER_FILE}: site.management`,
  "cidr-overlap": ACROSS_ENTRIES,
  "cidr-overlap-management": `${OTHER_FILE}: site.management`,
  "dhcp-end-outside-cidr": BETWEEN_VALUES,
  "dhcp-range-reversed": BETWEEN_VALUES,
  "dhcp-start-outside-cidr": BETWEEN_VALUES,
  "empty-folder": FOLDER,
  "extra-address-bad": BETWEEN_VALUES,
  "file-extension-uppercase": `${FOLDER}: the file name gamma.YAML`,
  "file-is-a-folder": FOLDER,
  "forward-range-beyond-65535": BETWEEN_VALUES,
  "forward-range-overlap": ACROSS_ENTRIES,
  "forward-shadows-reserved-port": `${OTHER_FILE}: the backend's reserved_ports (default tcp 22)`,
  "gateway-broadcast-address": BETWEEN_VALUES,
  "gateway-in-dhcp-range": BETWEEN_VALUES,
  "gateway-network-address": BETWEEN_VALUES,
  "gateway-outside-cidr": BETWEEN_VALUES,
  "group-network-unknown": REFERENCE,
  "group-unknown": REFERENCE,
  "host-address-duplicate": ACROSS_ENTRIES,
  "host-address-outside-management": `${OTHER_FILE}: site.management`,
  "host-network-unknown": REFERENCE,
  "host-without-role": FROM_GROUPS,
  "lacp-active-on-active-backup": FROM_GROUPS,
  "lease-duplicate-ip": ACROSS_ENTRIES,
  "lease-in-dhcp-range": BETWEEN_VALUES,
  "lease-is-broadcast": BETWEEN_VALUES,
  "lease-is-gateway": BETWEEN_VALUES,
  "lease-outside-cidr": BETWEEN_VALUES,
  "mac-duplicate-across-networks": ACROSS_ENTRIES,
  "mtu-above-uplink": `${OTHER_FILE}: the uplink mtu of every host carrying the network`,
  "mtu-differs-between-hosts": ACROSS_ENTRIES,
  "mtu-differs-set-in-group": ACROSS_ENTRIES,
  "name-bond-is-default-trunk-bridge": GENERATED_NAMES,
  "name-bond-is-macvtap": HYPERVISOR,
  "name-bond-is-network-bridge": GENERATED_NAMES,
  "name-external-interface-is-bonding-masters": HYPERVISOR,
  "vxlan-underlay-is-vm-bridge": GENERATED_NAMES,
  "vxlan-underlay-address-in-vm-network": `${OTHER_FILE}: the VM networks' CIDRs`,
  "vxlan-underlay-address-loopback": "an address class (loopback, link-local, multicast, reserved) that a dotted-quad pattern does not spell out; the loader refuses it by ipaddr.js's range",
  "name-external-interface-is-gateway-port": GENERATED_NAMES,
  "name-external-interface-is-vxlan-device": GENERATED_NAMES,
  "name-external-interface-is-libvirt-bridge": HYPERVISOR,
  "name-external-interface-is-libvirt-bridge-nic": HYPERVISOR,
  "name-external-interface-is-member": BETWEEN_VALUES,
  "name-external-interface-is-ovs-netdev": HYPERVISOR,
  "name-external-interface-is-vlan-interface": GENERATED_NAMES,
  "name-member-is-libvirt-tap": HYPERVISOR,
  "name-member-is-patch-port": GENERATED_NAMES,
  "name-member-is-vlan-interface": GENERATED_NAMES,
  "name-network-uplink-vs-trunk-bridge": GENERATED_NAMES,
  "name-set-timeout-short": `${BETWEEN_VALUES}; caught when either is left at its default`,
  "name-trunk-bridge-is-member": BETWEEN_VALUES,
  "name-trunk-bridge-is-patch-port": GENERATED_NAMES,
  "nats-in-vm-network": `${OTHER_FILE}: the networks' CIDRs`,
  "nats-multicast": SERVER_BLOCKS,
  "network-twice-across-files": ACROSS_ENTRIES,
  "no-backend": ACROSS_ENTRIES,
  "only-empty-yaml": FOLDER,
  "port-forward-duplicate-listen": ACROSS_ENTRIES,
  "port-forward-unknown-vm": REFERENCE,
  "site-missing": FOLDER,
  "site-twice": ACROSS_ENTRIES,
  "two-backends": ACROSS_ENTRIES,
  "uplink-missing": FROM_GROUPS,
  "uplink-missing-members": FROM_GROUPS,
  "upstream-dns-in-vm-network": `${OTHER_FILE}: the networks' CIDRs`,
  "upstream-dns-is-gateway": `${OTHER_FILE}: the networks' gateways`,
  "upstream-dns-limited-broadcast": SERVER_BLOCKS,
  "upstream-dns-multicast": SERVER_BLOCKS,
  "upstream-dns-this-network": SERVER_BLOCKS,
  "vlan-1": `${OTHER_FILE}: allow_vlan_1 is in the site section (refused when the site is in the same file)`,
  "vlan-duplicate": ACROSS_ENTRIES,
  "vlan-duplicate-across-files": ACROSS_ENTRIES,
  "vm-host-lacks-network": `${OTHER_FILE}: the host's networks`,
  "vm-host-unknown": REFERENCE,
  "vm-nics-on-two-hosts": ACROSS_ENTRIES,
  "vm-on-backend": `${OTHER_FILE}: the host's role`,
  "vm-two-router-networks": ACROSS_ENTRIES,
  "vmhost-with-external-interface": FROM_GROUPS,
  "vmhost-without-networks": FROM_GROUPS,
};

/**
 * Cases that are not YAML data at all: the yaml package (the parser
 * yaml-language-server uses too) reports them before any schema applies.
 */
export const YAML_LEVEL: Record<string, string> = {
  "yaml-alias-before-anchor": "an alias used before its anchor is defined",
  "yaml-alias-bomb": "aliases expanding past 100 nodes: the yaml package refuses them when it builds the data (as the loader does); an editor that only walks the YAML tree may not",
  "yaml-custom-tag": "an unresolved tag (!secret)",
  "yaml-duplicate-key": "a key twice in one mapping",
  "yaml-syntax-error": "a syntax error",
  "yaml-tab-indent": "tabs as indentation",
  "yaml-unclosed-quote": "an unclosed quote",
  "yaml-unknown-tag": "an unresolved tag (python/object/apply)",
};
