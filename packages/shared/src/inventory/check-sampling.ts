import { cidrContains, ipv4ToInt, parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import type { NetworkSpec } from "./schema.ts";
import { IPFIX_PORT, parseCollector, SFLOW_PORT, type IpfixSettings, type SflowSettings } from "./schema-sampling.ts";
import type { Located, Ref, Reporter } from "./report.ts";

/** Blocks where no collector can listen for a whole site's hosts, with why (RFC 6890 registry). */
const NO_COLLECTOR: readonly { cidr: string; why: string }[] = [
  { cidr: "0.0.0.0/8", why: '"this network" (RFC 791, RFC 1122): a source only, never a destination' },
  { cidr: "127.0.0.0/8", why: "loopback (RFC 1122): each host would send its samples to itself" },
  { cidr: "169.254.0.0/16", why: "link-local (RFC 3927): not routed to the hosts' collector" },
  { cidr: "224.0.0.0/4", why: "multicast (RFC 5771): a group, not a collector" },
  { cidr: "240.0.0.0/4", why: "reserved (RFC 1112), with the limited broadcast 255.255.255.255 (RFC 919)" },
];
const blocks = NO_COLLECTOR.map((b) => ({ ...b, block: parseIpv4Cidr(b.cidr) as Ipv4Cidr }));

/**
 * The site's `sflow` and `ipfix` collectors (the schema took their form,
 * schema-sampling.ts), against the rest of the site. Refused, each at its
 * list entry:
 * - the same collector (address and port) listed twice: OVS keeps `targets`
 *   as a set, the second would silently vanish;
 * - an address inside a VM network: the samples carry the headers of every
 *   network's packets (and counters of every port); sent into one VM
 *   network, they would show its VMs the traffic of the others;
 * - 0.0.0.0/8, loopback, link-local, multicast, reserved and broadcast:
 *   no collector of the site listens there.
 */
export function checkSampling(
  r: Reporter,
  { site, siteRef, networks }: { site: { sflow?: SflowSettings | undefined; ipfix?: IpfixSettings | undefined }; siteRef: Ref; networks: readonly Located<NetworkSpec>[] },
): void {
  const nets = networks.map((n) => ({ name: n.name, cidr: parseIpv4Cidr(n.value.cidr) })).filter((n): n is { name: string; cidr: Ipv4Cidr } => typeof n.cidr !== "string");
  const sections = [
    { key: "sflow", settings: site.sflow, port: SFLOW_PORT },
    { key: "ipfix", settings: site.ipfix, port: IPFIX_PORT },
  ] as const;
  for (const { key, settings, port } of sections) {
    if (!settings) continue;
    const seen = new Map<string, number>();
    settings.collectors.forEach((text, i) => {
      const c = parseCollector(text, port);
      if (!c) return; // the schema said why
      const at = r.at(siteRef, key, "collectors", i);
      const target = `${c.address}:${c.port}`;
      const first = seen.get(target);
      if (first !== undefined) {
        r.report(at, `collector ${target} is already listed at ${r.where(r.at(siteRef, key, "collectors", first))}`);
        return;
      }
      seen.set(target, i);
      const addr = ipv4ToInt(c.address);
      const inNet = nets.find((n) => cidrContains(n.cidr, addr));
      if (inNet) {
        r.report(at, `collector ${c.address} lies in VM network ${inNet.name} (${inNet.cidr.text}): the samples carry the headers and counters of every network's ports, and would show that network's VMs the traffic of the others; put the collector outside the site's VM networks (e.g. on the management network)`);
        return;
      }
      const block = blocks.find((b) => cidrContains(b.block, addr));
      if (block) r.report(at, `collector ${c.address} lies in ${block.cidr}, ${block.why}; give the collector's own unicast address`);
    });
  }
}
