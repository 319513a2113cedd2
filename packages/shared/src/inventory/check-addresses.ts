import { cidrContains, cidrsOverlap, cidrWithin, ipv4ToInt, isIpv4, parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import type { Ref, Reporter } from "./report.ts";

/**
 * IPv4 blocks that cannot carry a VM network, from the IANA IPv4
 * Special-Purpose Address Registry (RFC 6890 and the RFCs it lists) and
 * the IPv4 multicast space. A VM network overlapping one of them is
 * refused, naming the block and its RFC. A VM's `ip` and `extra_addresses`
 * must lie inside its network, so refusing the network covers them too.
 *
 * Refused, each because hosts or routers give its addresses a meaning that
 * is not "a host on this LAN":
 * - 0.0.0.0/8: "this network" (RFC 791, RFC 1122 3.2.1.3); a source only,
 *   never a destination; 0.0.0.0 is "any address" to every socket API.
 * - 127.0.0.0/8: loopback (RFC 1122 3.2.1.3); a host never sends it on a
 *   wire and drops it arriving from one (the kernel's martian filter).
 * - 169.254.0.0/16: link-local (RFC 3927); routers do not forward it, and
 *   169.254.169.254 is every cloud's metadata service (always denied as an
 *   egress destination, see check-gateway.ts).
 * - 192.0.0.0/24: IETF protocol assignments (RFC 6890 2.2.2). Its
 *   addresses are handed to protocols, not to networks (192.0.0.0/29
 *   DS-Lite, RFC 6333; 192.0.0.170-171 NAT64 prefix discovery, RFC 7050;
 *   192.0.0.9 PCP anycast, RFC 7723), and the registry marks the block as
 *   not forwardable. Refused: a VM network there would answer for those.
 * - 224.0.0.0/4: multicast (RFC 5771); a group address, never a host's.
 * - 240.0.0.0/4: reserved for future use (RFC 1112 4), which includes the
 *   limited broadcast 255.255.255.255 (RFC 919); Linux and most stacks
 *   refuse to route it.
 *
 * Accepted on purpose: the private blocks (RFC 1918), shared address space
 * 100.64.0.0/10 (RFC 6598, carrier-grade NAT, which some sites use
 * internally), benchmarking 198.18.0.0/15 (RFC 2544) and the documentation
 * blocks 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (RFC 5737): none
 * has a meaning on a host, the gateway masquerades VM traffic (so they
 * never leave the site as sources), and examples and labs use them. A
 * public block is accepted too: a site may own it.
 */
export const SPECIAL_PURPOSE_BLOCKS: readonly { cidr: string; name: string; rfc: string }[] = [
  { cidr: "0.0.0.0/8", name: "\"this network\"", rfc: "RFC 791, RFC 1122" },
  { cidr: "127.0.0.0/8", name: "loopback", rfc: "RFC 1122" },
  { cidr: "169.254.0.0/16", name: "link-local", rfc: "RFC 3927" },
  { cidr: "192.0.0.0/24", name: "IETF protocol assignments", rfc: "RFC 6890" },
  { cidr: "224.0.0.0/4", name: "multicast", rfc: "RFC 5771" },
  { cidr: "240.0.0.0/4", name: "reserved, with the limited broadcast 255.255.255.255", rfc: "RFC 1112" },
];

const parsed = SPECIAL_PURPOSE_BLOCKS.map((b) => ({ ...b, block: parseIpv4Cidr(b.cidr) as Ipv4Cidr }));

/**
 * Why `cidr` cannot be a VM network (it overlaps a special-purpose block:
 * the message names the block and its RFC), or undefined when it can.
 */
export function specialPurposeProblem(cidr: Ipv4Cidr): string | undefined {
  const hit = parsed.find((b) => cidrsOverlap(cidr, b.block));
  if (!hit) return undefined;
  return `${cidr.text} ${cidrWithin(cidr, hit.block) ? "lies in" : "overlaps"} ${hit.cidr} (${hit.name}, ${hit.rfc}), which cannot carry a VM network: hosts and routers treat those addresses specially; use a private block such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 (RFC 1918)`;
}

/**
 * Where one network sits: its CIDR outside the special-purpose blocks, and
 * its VLAN id not 1 unless the site allows it. IEEE 802.1Q gives VLAN 1 to
 * every port untagged by default; most switches (Cisco, Arista, Juniper's
 * "default" VLAN) keep it as a trunk's native VLAN, so its frames cross
 * the trunk untagged and mix with whatever else runs untagged there (often
 * management). `allow_vlan_1: true` says the site's trunks tag VLAN 1.
 */
export function checkNetworkSpace(
  r: Reporter,
  { ref, cidr, vlan, allowVlan1, siteRef }: { ref: Ref; cidr: Ipv4Cidr; vlan: number; allowVlan1: boolean; siteRef: Ref | undefined },
): void {
  const special = specialPurposeProblem(cidr);
  if (special) r.report(r.at(ref, "cidr"), special);
  if (vlan === 1 && !allowVlan1) {
    r.report(
      r.at(ref, "vlan"),
      `VLAN 1 is the native (untagged) VLAN of a trunk on most switches: its frames would cross the trunk untagged and mix with the untagged traffic there (often management); use another VLAN id (2-4094), or set allow_vlan_1: true in site${siteRef ? ` (${r.where(siteRef)})` : ""} if the site's trunks carry VLAN 1 tagged`,
    );
  }
}

/** The special-purpose blocks where no server the site names (upstream_dns, nats) can be. */
const SERVER_BLOCKS = new Set(["0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"]);

/**
 * The servers the site names outside its networks: `upstream_dns` (the
 * resolvers dnsmasq on the backend forwards to) and the IPv4 hosts of the
 * `nats` URLs. Refused:
 * - a gateway address as an upstream resolver: dnsmasq would forward to
 *   itself (a forwarding loop, every answer SERVFAIL);
 * - an address inside a VM network: a VM there would answer the backend's
 *   queries (and fill every allowlist's name sets with its own answers) or
 *   take the agents' NATS connections (a VM speaking for the controller);
 * - 0.0.0.0/8, 224.0.0.0/4, 240.0.0.0/4 (with 255.255.255.255): no
 *   resolver or server answers at "this network", a multicast group or the
 *   reserved block.
 * A network that overlaps the management network is refused as such, and
 * not again here. Accepted on purpose: loopback (netfleet's dnsmasq listens
 * only on the gateway addresses, `except-interface=lo`, so 127.0.0.53 is
 * the backend's own systemd-resolved or unbound, not a loop; a NATS server
 * on the controller's machine in one-machine labs), link-local
 * (169.254.169.253 is a cloud's resolver) and every other block.
 */
export function checkSiteServers(
  r: Reporter,
  { site, siteRef, networks }: { site: { upstream_dns: readonly string[]; nats: readonly string[]; management?: string | undefined }; siteRef: Ref; networks: readonly { name: string; ref: Ref; value: { cidr: string; gateway: string } }[] },
): void {
  const management = site.management === undefined ? undefined : parseIpv4Cidr(site.management);
  const refused = (c: Ipv4Cidr) => typeof management !== "string" && management !== undefined && cidrsOverlap(c, management);
  const nets = networks.map((n) => ({ name: n.name, ref: n.ref, gateway: n.value.gateway, cidr: parseIpv4Cidr(n.value.cidr) })).filter((n): n is typeof n & { cidr: Ipv4Cidr } => typeof n.cidr !== "string" && !refused(n.cidr));
  const blockOf = (addr: number) => parsed.find((b) => SERVER_BLOCKS.has(b.cidr) && cidrContains(b.block, addr));
  site.upstream_dns.forEach((dns, i) => {
    if (!isIpv4(dns)) return;
    const at = r.at(siteRef, "upstream_dns", i);
    const addr = ipv4ToInt(dns);
    const gw = nets.find((n) => n.gateway === dns);
    if (gw) {
      r.report(at, `upstream resolver ${dns} is the gateway of network ${gw.name} (${r.where(r.at(gw.ref, "gateway"))}), where dnsmasq itself listens: it would forward every query to itself (a forwarding loop); give the site's real resolvers, or leave upstream_dns empty to use the backend's resolv.conf`);
      return;
    }
    const inNet = nets.find((n) => cidrContains(n.cidr, addr));
    if (inNet) {
      r.report(at, `upstream resolver ${dns} lies in VM network ${inNet.name} (${inNet.cidr.text}): a VM there would answer the backend's queries and fill every allowlist's name sets with its own addresses; give a resolver outside the site's VM networks`);
      return;
    }
    const block = blockOf(addr);
    if (block) r.report(at, `upstream resolver ${dns} lies in ${block.cidr} (${block.name}, ${block.rfc}), where no resolver answers; give the site's real resolvers, or leave upstream_dns empty to use the backend's resolv.conf`);
  });
  site.nats.forEach((url, i) => {
    // The schema took the URL (NatsUrl): its host is what the WHATWG parser gives.
    const host = new URL(url).hostname;
    if (!isIpv4(host)) return;
    const at = r.at(siteRef, "nats", i);
    const addr = ipv4ToInt(host);
    const inNet = nets.find((n) => cidrContains(n.cidr, addr));
    if (inNet) {
      r.report(at, `NATS server ${host} lies in VM network ${inNet.name} (${inNet.cidr.text}): a VM there would take the agents' connections and speak for the controller; give an address outside the site's VM networks (e.g. on the management network)`);
      return;
    }
    const block = blockOf(addr);
    if (block) r.report(at, `NATS server ${host} lies in ${block.cidr} (${block.name}, ${block.rfc}), where no server can be reached: give the NATS server's address (e.g. on the management network)`);
  });
}
