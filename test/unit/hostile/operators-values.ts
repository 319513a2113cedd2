/**
 * Value operators: addresses that make no sense for a VM network
 * (special-purpose blocks of RFC 6890: loopback, multicast, reserved,
 * "this network", link-local), malformed IPv4 literals and CIDRs, host
 * bits, gateways outside; VLAN ids outside 2-4094 or reused; ports out of
 * 1-65535, reversed ranges, an empty allow list; uplinks that cut a host
 * off (balance-tcp without LACP, LACP on a mode without it, carries_management
 * on an OVS trunk, MTU 9000 beside 1500 on one network).
 */
import fc from "fast-check";
import { op, q, type Operator } from "./operator.ts";
import type { Site } from "./site.ts";

type Obj = Record<string, unknown>;

/** Moves network `name` to `prefix`.0/24 (prefix: three octets): cidr, gateway .1, DHCP .100-.199, vm1 at .11. */
function moveNetwork(s: Site, name: string, prefix: string): void {
  const n = s.network(name);
  n.cidr = `${prefix}.0/24`;
  n.gateway = `${prefix}.1`;
  n.dhcp = { start: `${prefix}.100`, end: `${prefix}.199` };
  const vms = n.vms as Record<string, Obj>;
  for (const vm of Object.values(vms)) if (vm.ip !== undefined) vm.ip = `${prefix}.11`;
}

/** Ways to break a valid dotted quad; each keeps the rest of the site consistent. */
const IPV4_CORRUPTIONS: Record<string, (ip: string) => string> = {
  "octet 300": (ip) => ip.replace(/\.\d+$/, ".300"),
  "three octets": (ip) => ip.replace(/\.\d+$/, ""),
  "five octets": (ip) => `${ip}.5`,
  "leading zero (inet_aton reads octal)": (ip) => `0${ip}`,
  "leading zero in last octet": (ip) => ip.replace(/\.(\d+)$/, ".0$1"),
  "hex octet": (ip) => ip.replace(/^\d+/, "0x0a"),
  "trailing space": (ip) => `${ip} `,
  "leading space": (ip) => ` ${ip}`,
  "negative octet": (ip) => ip.replace(/\.(\d+)$/, ".-$1"),
  "plus sign": (ip) => ip.replace(/\.(\d+)$/, ".+$1"),
  "exponent": (ip) => ip.replace(/^\d+/, "1e1"),
  "with /32": (ip) => `${ip}/32`,
  "fullwidth digits": (ip) => ip.replace(/\d/g, (d) => String.fromCharCode(0xff10 + Number(d))),
  "trailing dot": (ip) => `${ip}.`,
  "trailing newline": (ip) => `${ip}\n`,
};

const IPV4_FIELDS: Record<string, [get: (s: Site) => Obj, key: string | number]> = {
  "networks.alpha.gateway": [(s) => s.network("alpha"), "gateway"],
  "networks.alpha.vms.vm1.ip": [(s) => (s.network("alpha").vms as Record<string, Obj>).vm1!, "ip"],
  "networks.alpha.dhcp.start": [(s) => s.network("alpha").dhcp as Obj, "start"],
  "hosts.gw.address": [(s) => s.host("gw"), "address"],
  "site.upstream_dns[0]": [(s) => ((s.site.upstream_dns = ["10.0.0.53"]), s.site.upstream_dns as unknown as Obj), 0],
  "networks.beta.vms.vm2.extra_addresses[0]": [(s) => (((s.network("beta").vms as Record<string, Obj>).vm2!.extra_addresses = ["10.2.0.50"]), (s.network("beta").vms as Record<string, Obj>).vm2!.extra_addresses as Obj), 0],
};

const CIDR_CORRUPTIONS = ["/33", "/-1", "/024", "/24.0", "", "/ 24", "/", "/255.255.255.0", "/24/24", "/+24", "/0x18", "/24 "];

/** Special-purpose blocks (RFC 6890) as three-octet prefixes of a /24 inside them. */
const SPECIAL_PREFIXES = ["127.0.0", "127.5.0", "224.0.0", "239.1.0", "240.0.0", "250.10.0", "255.255.255", "0.0.0", "0.10.0", "169.254.0", "169.254.200"];

export const valueOperators: Operator[] = [
  op(
    "addresses",
    "nats-url-bad",
    9,
    fc.constantFrom("nats://10.0.0.254:0", "nats://10.0.0.254:65536", "nats://10.0.0.254:99999", "nats://10.0.0.254", "http://10.0.0.254:4222", "nats://10.0.0.254:4222/x", "nats://user:pw@10.0.0.254:4222", "nats://10.0.0.254:4222\n", " nats://10.0.0.254:4222"),
    (url) => ({
      detail: `site.nats = [${q(url)}]`,
      apply: (s) => {
        s.site.nats = [url];
      },
    }),
  ),
  op(
    "addresses",
    "dns-name-bad",
    10,
    fc.record({ name: fc.constantFrom("*.org", "a..b.org", "-a.example.org", "a_b.example.org", "A.EXAMPLE.ORG", "*.*.example.org", "example.org\n", "ex ample.org", "a.".repeat(130) + "org"), where: fc.constantFrom("site.domain", "dns_names", "allow.name") }),
    ({ name, where }) => ({
      detail: `${where} = ${q(name)}`,
      apply: (s) => {
        if (where === "site.domain") s.site.domain = name;
        else if (where === "dns_names") s.network("alpha").dns_names = [name];
        else ((s.network("alpha").vms as Record<string, Obj>).vm1!.allow as Obj[])[0] = { name, ports: [443] };
      },
    }),
  ),
  op("addresses", "mac-bad", 5, fc.constantFrom("01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "52:54:00:01:00", "52-54-00-01-00-02", "dup"), (mac) => ({
    detail: mac === "dup" ? "vm2 gets vm1's MAC" : `networks.alpha.vms.vm1.mac = ${q(mac)}`,
    apply: (s) => {
      if (mac === "dup") (s.network("beta").vms as Record<string, Obj>).vm2!.mac = "52:54:00:01:00:01";
      else (s.network("alpha").vms as Record<string, Obj>).vm1!.mac = mac;
    },
  })),
  op(
    "addresses",
    "special-purpose-block-as-network",
    18,
    fc.record({ prefix: fc.constantFrom(...SPECIAL_PREFIXES), network: fc.constantFrom("alpha", "beta") }),
    ({ prefix, network }) => ({
      detail: `networks.${network}.cidr = ${prefix}.0/24 (gateway, DHCP and VM addresses moved along)`,
      apply: (s) => moveNetwork(s, network, prefix),
    }),
  ),
  op("addresses", "network-containing-a-special-block", 5, fc.constantFrom("126.0.0.0/7", "169.254.0.0/15", "168.0.0.0/6", "224.0.0.0/3", "0.0.0.0/1"), (cidr) => ({
    detail: `networks.alpha.cidr = ${cidr} (a supernet of a special-purpose block; gateway, DHCP and VM moved along)`,
    apply: (s) => {
      const prefix = cidr.split(".").slice(0, 3).join(".");
      moveNetwork(s, "alpha", prefix);
      s.network("alpha").cidr = cidr;
    },
  })),
  op(
    "addresses",
    "malformed-ipv4",
    26,
    fc.record({ how: fc.constantFrom(...Object.keys(IPV4_CORRUPTIONS)), field: fc.constantFrom(...Object.keys(IPV4_FIELDS)) }),
    ({ how, field }) => ({
      detail: `${field}: ${how}`,
      apply: (s) => {
        const [get, key] = IPV4_FIELDS[field]!;
        const holder = get(s);
        holder[key] = IPV4_CORRUPTIONS[how]!(holder[key] as string);
      },
    }),
  ),
  op(
    "addresses",
    "malformed-cidr",
    16,
    fc.record({ suffix: fc.constantFrom(...CIDR_CORRUPTIONS), field: fc.constantFrom("networks.alpha.cidr", "site.management") }),
    ({ suffix, field }) => ({
      detail: `${field} = ${q((field === "site.management" ? "10.0.0.0" : "10.1.0.0") + suffix)}`,
      apply: (s) => {
        if (field === "site.management") s.site.management = "10.0.0.0" + suffix;
        else s.network("alpha").cidr = "10.1.0.0" + suffix;
      },
    }),
  ),
  op("addresses", "cidr-host-bits", 4, fc.constantFrom("networks.alpha.cidr=10.1.0.1/24", "networks.alpha.cidr=10.1.0.128/24", "networks.alpha.cidr=10.1.1.0/23", "site.management=10.0.0.1/24"), (form) => ({
    detail: form,
    apply: (s) => {
      const [field, value] = form.split("=") as [string, string];
      if (field === "site.management") s.site.management = value;
      else s.network("alpha").cidr = value;
    },
  })),
  op("addresses", "gateway-outside-or-edge", 5, fc.constantFrom("10.2.0.1", "10.1.1.1", "10.1.0.0", "10.1.0.255", "192.168.0.1"), (gw) => ({
    detail: `networks.alpha.gateway = ${gw} (cidr 10.1.0.0/24)`,
    apply: (s) => {
      s.network("alpha").gateway = gw;
    },
  })),
  op(
    "vlans",
    "vlan-out-of-range-or-reused",
    14,
    fc.record({ vlan: fc.constantFrom<unknown>(0, 1, 4095, 4096, -1, 1.5, 65536, "101", "0x65", "dup"), network: fc.constantFrom("alpha", "beta") }),
    ({ vlan, network }) => ({
      detail: vlan === "dup" ? `networks.${network}.vlan = the other network's VLAN` : `networks.${network}.vlan = ${q(vlan)}${vlan === 1 ? " (allow_vlan_1 not set)" : ""}`,
      apply: (s) => {
        s.network(network).vlan = vlan === "dup" ? (network === "alpha" ? 102 : 101) : vlan;
      },
    }),
  ),
  op("vlans", "vlan-1-explicitly-not-allowed", 2, fc.constantFrom("alpha", "beta"), (network) => ({
    detail: `networks.${network}.vlan = 1 with site.allow_vlan_1: false`,
    apply: (s) => {
      s.site.allow_vlan_1 = false;
      s.network(network).vlan = 1;
    },
  })),
  op("vlans", "vlan-1-twice-when-allowed", 1, fc.constant(0), () => ({
    detail: "allow_vlan_1: true and both networks on VLAN 1",
    apply: (s) => {
      s.site.allow_vlan_1 = true;
      s.network("alpha").vlan = 1;
      s.network("beta").vlan = 1;
    },
  })),
  op("ports", "allow-ports-bad", 8, fc.constantFrom<unknown[]>([], [0], [65536], [-1], [1.5], ["443"], ["400-300"], [null]), (ports) => ({
    detail: `networks.alpha.vms.vm1.allow[0].ports = ${q(ports)}`,
    apply: (s) => {
      ((s.network("alpha").vms as Record<string, Obj>).vm1!.allow as Obj[])[0]!.ports = ports;
    },
  })),
  op(
    "ports",
    "port-forward-bad",
    10,
    fc.record({ field: fc.constantFrom("listen", "port"), value: fc.constantFrom<unknown>(0, 65536, -22, 22.5, "22") }),
    ({ field, value }) => ({
      detail: `networks.alpha.port_forwards[0].${field} = ${q(value)}`,
      apply: (s) => {
        (s.network("alpha").port_forwards as Obj[])[0]![field] = value;
      },
    }),
  ),
  op(
    "ports",
    "port-range-bad",
    14,
    fc.record({ ports: fc.constantFrom<unknown[]>(["200-100"], ["0-10"], ["65530-65536"], ["1-"], ["-5"], ["80-80-80"], ["8000 - 8100"], []), where: fc.constantFrom("gateway_services", "reserved_ports") }),
    ({ ports, where }) => ({
      detail: `${where === "gateway_services" ? "networks.alpha.gateway_services" : "hosts.gw.reserved_ports"} = [{ports: ${q(ports)}}]`,
      apply: (s) => {
        if (where === "gateway_services") s.network("alpha").gateway_services = [{ ports }];
        else s.host("gw").reserved_ports = [{ ports }];
      },
    }),
  ),
  op("ports", "port-range-forward-beyond-65535", 2, fc.constantFrom(65500, 65300), (listen) => ({
    detail: `networks.beta.port_ranges = [{listen: ${listen}, port: 22}] on a /24 (ends past 65535)`,
    apply: (s) => {
      s.network("beta").port_ranges = [{ listen, port: 22 }];
    },
  })),
  op("uplinks", "balance-tcp-without-lacp", 3, fc.constantFrom("hv1", "gw", "group"), (where) => ({
    detail: `${where}: ovs-trunk, bond_mode balance-tcp, lacp off`,
    apply: (s) => {
      if (where === "group") {
        s.groups.vmhosts!.uplink = { lacp: "off" };
        s.ovsTrunk("hv1", { bond_mode: "balance-tcp" });
      } else s.ovsTrunk(where, { bond_mode: "balance-tcp", lacp: "off" });
    },
  })),
  op(
    "uplinks",
    "lacp-on-mode-without-lacp",
    7,
    fc.constantFrom("kernel active-backup/active", "kernel active-backup/passive", "kernel balance-rr/active", "kernel balance-xor/passive", "ovs-trunk active-backup/active", "ovs-trunk balance-slb/passive", "ovs-trunk balance-slb/active"),
    (form) => ({
      detail: `hv1 uplink ${form}`,
      apply: (s) => {
        const [mode, rest] = form.split(" ") as [string, string];
        const [bondMode, lacp] = rest.split("/") as [string, string];
        s.host("hv1").uplink = { mode, members: ["eth0", "eth1"], bond_mode: bondMode, lacp };
      },
    }),
  ),
  op(
    "uplinks",
    "mtu-mismatch-on-shared-network",
    4,
    fc.constantFrom([9000, 1500], [9216, 1500], [9000, 1280], [1500, 9000]),
    ([a, b]) => ({
      detail: `hv1 uplink mtu ${a}, hv2 (same networks) uplink mtu ${b}, gw mtu ${b}`,
      apply: (s) => {
        s.uplink("hv1").mtu = a;
        s.addHost2({ mode: "kernel", members: ["eth0", "eth1"], mtu: b });
        s.uplink("gw").mtu = b;
      },
    }),
  ),
  op("uplinks", "mtu-mismatch-through-a-group", 2, fc.constantFrom(9000, 9216), (mtu) => ({
    detail: `group vmhosts sets uplink mtu ${mtu} for hv1; gw keeps 1500`,
    apply: (s) => {
      s.groups.vmhosts!.uplink = { mtu };
    },
  })),
  op("uplinks", "carries-management-without-an-address-to-carry", 2, fc.constantFrom("no site management", "no host address"), (form) => ({
    detail: `hv1 kernel uplink with carries_management: true and ${form}`,
    apply: (s) => {
      s.uplink("hv1").carries_management = true;
      if (form === "no site management") delete s.site.management;
      else delete s.host("hv1").address;
    },
  })),
  op("uplinks", "carries-management-on-ovs-trunk", 3, fc.constantFrom("hv1", "gw", "group"), (where) => ({
    detail: `${where}: ovs-trunk with carries_management: true`,
    apply: (s) => {
      if (where === "group") {
        s.groups.vmhosts!.uplink = { carries_management: true };
        s.ovsTrunk("hv1");
      } else s.ovsTrunk(where, { carries_management: true });
    },
  })),
  op("uplinks", "lacp-not-an-enum", 4, fc.constantFrom<unknown>("on", "yes", true, "Active"), (lacp) => ({
    detail: `hv1: kernel 802.3ad with lacp ${q(lacp)}`,
    apply: (s) => {
      Object.assign(s.uplink("hv1"), { bond_mode: "802.3ad", lacp });
    },
  })),
  op("uplinks", "bond-mode-of-the-other-datapath", 3, fc.constantFrom("kernel/balance-tcp", "kernel/balance-slb", "ovs-trunk/802.3ad"), (form) => ({
    detail: `hv1 uplink ${form}`,
    apply: (s) => {
      const [mode, bondMode] = form.split("/") as [string, string];
      s.host("hv1").uplink = { mode, members: ["eth0", "eth1"], bond_mode: bondMode };
    },
  })),
  op(
    "uplinks",
    "members-bad",
    4,
    fc.constantFrom<unknown[]>([], ["eth0", "eth1", "eth2", "eth3", "eth4", "eth5", "eth6", "eth7", "eth8"], ["eth0", "eth0"], ["eth0", "bond0"]),
    (members) => ({
      detail: `hv1.uplink.members = ${q(members)}`,
      apply: (s) => {
        s.uplink("hv1").members = members;
      },
    }),
  ),
];
