import {
  egressDenyList,
  intToIpv4,
  netmask,
  parseIpv4Cidr,
  rangeForwardRuns,
  sha256Hex,
  type DnsmasqSpec,
  type ForwardSpec,
  type Host,
  type Inventory,
  type Ipv4Cidr,
  type Network,
  type NftTableSpec,
} from "@netfleet/shared";

/**
 * The backend's gateway role: the `inet netfleet` table and one dnsmasq per
 * network, compiled from the validated inventory. Pure and deterministic.
 */

/**
 * nft set that dnsmasq fills with the addresses a name resolves to. The name
 * as written is hashed, so `example.org` (that name) and `*.example.org`
 * (its subdomains) get different sets.
 */
export function dnsSetName(name: string): string {
  return `dns_${sha256Hex(name).slice(0, 12)}`;
}

/**
 * Destinations a network never reaches, whatever its egress (see
 * egressDenyList): management, link-local, the site's other networks and
 * egress_deny (site and network), in address order.
 */
function denyList(inventory: Inventory, n: Network): string[] {
  return egressDenyList(inventory.site, inventory.networks, n).map((d) => d.cidr);
}

/**
 * Port-forwards of one network: each `port_forwards` entry to its VM's
 * static ip (count 1), and each `port_ranges` entry as one ForwardSpec per
 * contiguous run of host addresses without the gateway, listen + (address -
 * network address) -> address:port.
 */
function networkForwards(n: Network, iface: string): ForwardSpec[] {
  const out: ForwardSpec[] = n.port_forwards.map((pf) => ({
    proto: pf.proto,
    listen: pf.listen,
    count: 1,
    vm: n.vms.find((v) => v.name === pf.vm)!.ip!,
    port: pf.port,
    interface: iface,
    from: pf.from,
  }));
  const cidr = parseIpv4Cidr(n.cidr) as Ipv4Cidr;
  for (const pr of n.port_ranges) {
    for (const run of rangeForwardRuns(cidr, n.gateway)) {
      out.push({ proto: pr.proto, listen: pr.listen + (run.first - cidr.network), count: run.last - run.first + 1, vm: intToIpv4(run.first), port: pr.port, interface: iface, from: pr.from });
    }
  }
  return out;
}

/** The backend's table `inet netfleet` (see NftTableSpec). */
export function firewall(inventory: Inventory, host: Host, networks: Network[], gwIface: (n: Network) => string): NftTableSpec {
  const allow: NftTableSpec["allow"] = [];
  const sets = new Set<string>();
  for (const n of networks) {
    if (n.egress !== "allowlist") continue;
    for (const vm of n.vms) {
      if (!vm.ip) continue;
      for (const a of vm.allow) {
        const ports = a.ports ? { ports: a.ports } : {};
        if (a.to) allow.push({ vm: vm.ip, to: a.to, proto: a.proto, ...ports });
        if (a.name) {
          sets.add(dnsSetName(a.name));
          allow.push({ vm: vm.ip, set: dnsSetName(a.name), proto: a.proto, ...ports });
        }
      }
    }
  }
  return {
    kind: "nft-table",
    name: "netfleet",
    externalInterfaces: host.external_interfaces ?? [host.external_interface!],
    networks: networks.map((n) => ({
      name: n.name,
      interface: gwIface(n),
      cidr: n.cidr,
      gateway: n.gateway,
      egress: n.egress,
      deny: denyList(inventory, n),
      services: n.gateway_services.map((s) => ({ proto: s.proto, ports: { first: s.first, last: s.last } })),
      ...vmServicesOf(n),
      // nflog groups are 16-bit; the VLAN id (1-4094) is unique per site.
      ...(n.audit ? { auditGroup: n.vlan } : {}),
    })),
    allow,
    dnsSets: [...sets].sort(),
    dnsSetTimeout: inventory.site.name_set_timeout,
    forwards: networks.flatMap((n) => networkForwards(n, gwIface(n))).sort((a, b) => a.listen - b.listen || a.proto.localeCompare(b.proto)),
  };
}

/** dnsmasq of one network on the backend (see DnsmasqSpec). */
export function dnsmasqSpec(inventory: Inventory, n: Network, iface: string): DnsmasqSpec {
  const allowed = new Set(n.vms.flatMap((vm) => vm.allow.flatMap((a) => (a.name ? [a.name] : []))));
  const names = [...new Set([...n.dns_names, ...allowed])].sort();
  return {
    kind: "dnsmasq",
    name: n.name,
    interface: iface,
    address: n.gateway,
    netmask: netmask(n.prefix),
    domain: `${n.name}.${inventory.site.domain}`,
    ...(n.dhcp ? { dhcp: { start: n.dhcp.start, end: n.dhcp.end, leaseTime: n.dhcp.lease_time } } : {}),
    router: n.router,
    mtu: n.mtu,
    maxTtl: inventory.site.dns_max_ttl,
    hosts: n.vms.map((vm) => ({ name: vm.name, mac: vm.mac, ...(vm.ip ? { ip: vm.ip } : {}) })),
    dns: n.dns,
    upstream: inventory.site.upstream_dns,
    allowNames: names.map((name) => (allowed.has(name) ? { name, set: dnsSetName(name) } : { name })),
  };
}

/**
 * The per-VM gateway services of network `n` (a profile's or the VM's own
 * `gateway_services`, beyond the network's), by VM address; `{}` when no VM
 * has any, so an assignment without them is unchanged. The loader refuses
 * them on a VM without a static ip.
 */
function vmServicesOf(n: Network): { vmServices?: { vm: string; proto: "tcp" | "udp"; ports: { first: number; last: number } }[] } {
  const list = n.vms.flatMap((vm) => (vm.ip ? (vm.gateway_services ?? []).map((s) => ({ vm: vm.ip!, proto: s.proto, ports: { first: s.first, last: s.last } })) : []));
  return list.length > 0 ? { vmServices: list } : {};
}
