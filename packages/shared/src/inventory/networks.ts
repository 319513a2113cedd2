import { quoteToken } from "../errors.ts";
import { isUnicastMac } from "../names.ts";
import { cidrContains, cidrsOverlap, ipv4ToInt, parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import { dotted } from "./source.ts";
import type { NetworkSpec } from "./schema.ts";
import { resolvePortSets } from "./ports.ts";
import { checkNetworkSpace } from "./check-addresses.ts";
import type { Network, Vm } from "./model.ts";
import type { Located, Reporter, Ref } from "./report.ts";

/**
 * The site's networks as the compiler reads them, checked against each
 * other (VLAN ids and CIDRs unique, no overlap with the management network
 * or a special-purpose block) and each on its own (see `resolveNetwork`).
 * `mtu` is left for `checkGateway`, which knows the hosts carrying each
 * network. Problems go to `r`; the result keeps the order of `networks`.
 */
export function resolveNetworks(r: Reporter, networks: Located<NetworkSpec>[], management: Ipv4Cidr | undefined, siteRef: Ref | undefined, allowVlan1: boolean): Network[] {
  const vlans = new Map<number, Ref>();
  const cidrs: { cidr: Ipv4Cidr; ref: Ref; name: string }[] = [];
  /** VM MACs across all networks: a MAC is unique in the site. */
  const macs = new Map<string, Ref>();
  const out: Network[] = [];

  for (const network of networks) {
    const { name, value: net, ref } = network;
    const firstVlan = vlans.get(net.vlan);
    if (firstVlan) r.report(r.at(ref, "vlan"), `VLAN ${net.vlan} is already used by ${dotted(firstVlan.path.slice(0, 2))} at ${r.where(firstVlan)}`);
    else vlans.set(net.vlan, r.at(ref, "vlan"));

    const cidr = parseIpv4Cidr(net.cidr) as Ipv4Cidr;
    for (const other of cidrs) {
      if (cidrsOverlap(cidr, other.cidr)) r.report(r.at(ref, "cidr"), `${net.cidr} overlaps network ${other.name} (${other.cidr.text})`);
    }
    if (management && cidrsOverlap(cidr, management)) {
      r.report(r.at(ref, "cidr"), `${net.cidr} overlaps the management network ${management.text}${siteRef ? ` (${r.where(r.at(siteRef, "management"))})` : ""}`);
    }
    cidrs.push({ cidr, ref: r.at(ref, "cidr"), name });
    checkNetworkSpace(r, { ref, cidr, vlan: net.vlan, allowVlan1, siteRef });
    out.push(resolveNetwork(r, network, cidr, macs));
  }
  return out;
}

/** Where addresses sit in one network, once its gateway and DHCP range are checked. */
interface AddressPlan {
  /** Inside the network's CIDR. */
  inside(addr: string): boolean;
  /** Not the network or broadcast address (any address of a /31 or /32, RFC 3021). */
  usable(addr: string): boolean;
  /** Inside the DHCP range (false without DHCP). */
  inRange(addr: string): boolean;
  /** The DHCP range as written, `start-end` ("" without DHCP). */
  range: string;
  /** The DHCP range is present and sound: only then is "inside the range" reported. */
  rangeOk: boolean;
}

/** One network's addresses, VMs, cluster groups, forwards and DNS policy, checked and resolved. */
function resolveNetwork(r: Reporter, network: Located<NetworkSpec>, cidr: Ipv4Cidr, macs: Map<string, Ref>): Network {
  const { name, value: net, ref } = network;
  const dhcp = net.dhcp === false ? undefined : net.dhcp;
  const plan = checkAddressPlan(r, ref, net, cidr);
  const { vms, leases } = resolveVms(r, network, plan, macs);
  // A virtual IP may be shared by several VMs (that is its point); it may not be another VM's static lease.
  for (const [vmName, vm] of Object.entries(net.vms)) {
    vm.extra_addresses.forEach((extra, i) => {
      const owner = leases.get(extra);
      if (owner && extra !== vm.ip) r.report(r.at(ref, "vms", vmName, "extra_addresses", i), `extra address ${extra} is a static lease at ${r.where(owner)}`);
    });
  }
  const clusterGroups = resolveClusterGroups(r, network, vms);

  net.port_forwards.forEach((pf, i) => {
    const pfRef = r.at(ref, "port_forwards", i);
    const target = net.vms[pf.vm];
    if (!target) r.report(r.at(pfRef, "vm"), `no VM ${quoteToken(pf.vm)} in network ${name}`);
    else if (target.ip === undefined) r.report(r.at(pfRef, "vm"), `VM ${pf.vm} has no static ip: a port_forwards entry needs one (port_ranges reach every address, DHCP VMs too)`);
  });

  const dns = net.dns ?? net.egress;
  if (net.egress === "allowlist" && dns === "open" && !net.dns_open_with_allowlist) {
    r.report(r.at(ref, "dns"), `dns: open on an egress: allowlist network lets every name resolve, so DNS itself leads out (a DNS tunnel); leave dns out (it follows egress) or set dns_open_with_allowlist: true`);
  } else if (net.dns_open_with_allowlist && !(net.egress === "allowlist" && dns === "open")) {
    r.report(r.at(ref, "dns_open_with_allowlist"), `dns_open_with_allowlist applies only to a network with egress: allowlist and dns: open (${name} has egress: ${net.egress}, dns: ${dns})`, { key: true });
  }

  return {
    name,
    vlan: net.vlan,
    vni: net.vni ?? net.vlan,
    cidr: net.cidr,
    prefix: cidr.prefix,
    gateway: net.gateway,
    mtu: net.mtu ?? 0, // resolved with the hosts (checkGateway)
    ...(dhcp ? { dhcp } : {}),
    router: net.router,
    egress: net.egress,
    dns,
    egress_deny: net.egress_deny,
    gateway_services: resolvePortSets(net.gateway_services),
    audit: net.audit,
    isolated_ports: net.isolated_ports,
    dns_names: net.dns_names,
    vms,
    port_forwards: net.port_forwards,
    port_ranges: net.port_ranges,
    cluster_groups: clusterGroups,
  };
}

/** The gateway and the DHCP range: inside the CIDR, usable addresses, the range in order and without the gateway. */
function checkAddressPlan(r: Reporter, ref: Ref, net: NetworkSpec, cidr: Ipv4Cidr): AddressPlan {
  const inside = (addr: string) => cidrContains(cidr, ipv4ToInt(addr));
  const usable = (addr: string) => {
    const n = ipv4ToInt(addr);
    return cidr.prefix >= 31 || (n !== cidr.first && n !== cidr.last);
  };
  const dhcp = net.dhcp === false ? undefined : net.dhcp;
  const start = dhcp ? ipv4ToInt(dhcp.start) : 0;
  const end = dhcp ? ipv4ToInt(dhcp.end) : -1;
  const inRange = (addr: string) => {
    const n = ipv4ToInt(addr);
    return n >= start && n <= end;
  };
  const range = dhcp ? `${dhcp.start}-${dhcp.end}` : "";
  const gw = net.gateway;
  if (!inside(gw)) r.report(r.at(ref, "gateway"), `gateway ${gw} is outside ${net.cidr}`);
  else if (!usable(gw)) r.report(r.at(ref, "gateway"), `gateway ${gw} is the network or broadcast address of ${net.cidr}`);
  let rangeOk = dhcp !== undefined;
  for (const end_ of dhcp ? (["start", "end"] as const) : []) {
    const addr = dhcp![end_];
    if (!inside(addr)) {
      r.report(r.at(ref, "dhcp", end_), `DHCP range ${end_} ${addr} is outside ${net.cidr}`);
      rangeOk = false;
    } else if (!usable(addr)) {
      r.report(r.at(ref, "dhcp", end_), `DHCP range ${end_} ${addr} is the network or broadcast address of ${net.cidr}`);
      rangeOk = false;
    }
  }
  if (rangeOk && start > end) {
    r.report(r.at(ref, "dhcp", "end"), `DHCP range ends (${dhcp!.end}) before it starts (${dhcp!.start})`);
    rangeOk = false;
  }
  if (rangeOk && inside(gw) && inRange(gw)) r.report(r.at(ref, "gateway"), `gateway ${gw} is inside the DHCP range ${range}`);
  return { inside, usable, inRange, range, rangeOk };
}

/**
 * The network's VMs, sorted by name: a unicast MAC unique in the site, a
 * static lease and extra addresses where the address plan allows them, an
 * allow list only where it can apply. Returns the VMs and the static leases
 * by address.
 */
function resolveVms(r: Reporter, { name, value: net, ref }: Located<NetworkSpec>, plan: AddressPlan, macs: Map<string, Ref>): { vms: Vm[]; leases: Map<string, Ref> } {
  const { inside, usable, inRange, range, rangeOk } = plan;
  const gw = net.gateway;
  const dhcp = net.dhcp === false ? undefined : net.dhcp;
  const leases = new Map<string, Ref>();
  const vms: Vm[] = [];
  for (const [vmName, vm] of Object.entries(net.vms).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const vmRef = r.at(ref, "vms", vmName);
    const mac = vm.mac.toLowerCase();
    if (!isUnicastMac(mac)) r.report(r.at(vmRef, "mac"), `${vm.mac} is a multicast MAC address; a VM needs a unicast one`);
    const firstMac = macs.get(mac);
    if (firstMac) r.report(r.at(vmRef, "mac"), `MAC ${mac} is already used at ${r.where(firstMac)}`);
    else macs.set(mac, r.at(vmRef, "mac"));
    if (vm.ip !== undefined) {
      const ipRef = r.at(vmRef, "ip");
      if (!inside(vm.ip)) r.report(ipRef, `static lease ${vm.ip} is outside ${net.cidr}`);
      else if (!usable(vm.ip)) r.report(ipRef, `static lease ${vm.ip} is the network or broadcast address of ${net.cidr}`);
      else if (vm.ip === gw) r.report(ipRef, `static lease ${vm.ip} is the gateway address`);
      else if (rangeOk && inRange(vm.ip)) r.report(ipRef, `static lease ${vm.ip} is inside the DHCP range ${range}`);
      const firstIp = leases.get(vm.ip);
      if (firstIp) r.report(ipRef, `address ${vm.ip} is already leased at ${r.where(firstIp)}`);
      else leases.set(vm.ip, ipRef);
    } else if (!dhcp) {
      r.report(vmRef, `network ${name} has no DHCP: VM ${vmName} needs a static ip`, { key: true });
    }
    if (vm.allow.length > 0 && net.egress !== "allowlist") {
      r.report(r.at(vmRef, "allow"), `allow lists apply only to networks with egress: allowlist (${name} is ${net.egress})`, { key: true });
    } else if (vm.allow.length > 0 && vm.ip === undefined) {
      r.report(r.at(vmRef, "allow"), `the firewall matches allow lists by address: VM ${vmName} needs a static ip`, { key: true });
    }
    vm.extra_addresses.forEach((extra, i) => {
      const exRef = r.at(vmRef, "extra_addresses", i);
      if (!inside(extra)) r.report(exRef, `extra address ${extra} is outside ${net.cidr}`);
      else if (!usable(extra)) r.report(exRef, `extra address ${extra} is the network or broadcast address of ${net.cidr}`);
      else if (extra === gw) r.report(exRef, `extra address ${extra} is the gateway address: no VM may claim it`);
      else if (rangeOk && inRange(extra)) r.report(exRef, `extra address ${extra} is inside the DHCP range ${range}, where dnsmasq may lease it to another VM`);
      else if (extra === vm.ip) r.report(exRef, `extra address ${extra} is this VM's own ip`);
    });
    vms.push({ name: vmName, network: name, mac, ip: vm.ip, host: vm.host, isolated: vm.isolated ?? net.isolated_ports, allow: vm.allow, extra_addresses: [...new Set(vm.extra_addresses)].sort(), groups: [] });
  }
  return { vms, leases };
}

/** Cluster groups by name, each member a VM of this network listed once; each VM learns its groups (`vms[].groups`). */
function resolveClusterGroups(r: Reporter, { name, value: net, ref }: Located<NetworkSpec>, vms: Vm[]): Record<string, string[]> {
  const clusterGroups: Record<string, string[]> = {};
  for (const [group, members] of Object.entries(net.cluster_groups).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const seen = new Set<string>();
    members.forEach((member, i) => {
      const at = r.at(ref, "cluster_groups", group, i);
      if (!net.vms[member]) r.report(at, `no VM ${quoteToken(member)} in network ${name}`);
      else if (seen.has(member)) r.report(at, `VM ${member} is listed twice in cluster group ${group}`);
      seen.add(member);
    });
    clusterGroups[group] = [...seen].filter((m) => net.vms[m]).sort();
    for (const vm of vms) if (seen.has(vm.name)) vm.groups.push(group);
  }
  return clusterGroups;
}
