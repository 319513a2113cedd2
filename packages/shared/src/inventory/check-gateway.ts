import { cidrWithin, intToIpv4, ipv4ToInt, parseIpv4Block, parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import { formatPortRange, portRangesOverlap, type PortRange } from "./ports.ts";
import type { SiteSettings } from "./schema.ts";
import type { Ref, Reporter } from "./report.ts";
import { resolveMtu, type MtuInput } from "./check-mtu.ts";

/** The site settings and where they are written, with the networks and hosts (`MtuInput`; `resolved[].mtu` is filled in here). */
export interface GatewayInput extends MtuInput {
  site: SiteSettings;
  siteRef: Ref;
}

/**
 * Site-wide rules of the gateway settings, run once networks and hosts are
 * resolved: per-network MTU against every carrying host's uplink (and the
 * resolved MTU; check-mtu.ts), the name-set timeout against the DNS TTL cap, a VM's
 * default routes across its networks, and the backend's port-forwards
 * (block size, overlaps per protocol, reserved ports).
 */
export function checkGateway(r: Reporter, input: GatewayInput): void {
  checkTimeouts(r, input.site, input.siteRef);
  resolveMtu(r, input);
  checkVmNics(r, input);
  checkForwards(r, input);
  checkAllowAgainstDeny(r, input);
}

/** Link-local, where clouds serve instance metadata (RFC 3927; e.g. 169.254.169.254). */
export const LINK_LOCAL = "169.254.0.0/16";

/**
 * Destinations a network never reaches, whatever its egress, each with why:
 * the management network, link-local, every other network of the site, the
 * site's and the network's `egress_deny`. Deduplicated (first reason wins),
 * in address order. The agent adds the external interfaces' own subnets.
 */
export function egressDenyList(
  site: Pick<SiteSettings, "management" | "egress_deny">,
  networks: readonly { name: string; cidr: string }[],
  net: { name: string; egress_deny: readonly string[] },
): { cidr: string; why: string }[] {
  const all = [
    ...(site.management ? [{ cidr: site.management, why: "the management network" }] : []),
    { cidr: LINK_LOCAL, why: "link-local, cloud metadata" },
    ...networks.filter((o) => o.name !== net.name).map((o) => ({ cidr: o.cidr, why: `network ${o.name}` })),
    ...site.egress_deny.map((cidr) => ({ cidr, why: "the site's egress_deny" })),
    ...net.egress_deny.map((cidr) => ({ cidr, why: `${net.name}'s egress_deny` })),
  ];
  const unique = [...new Map(all.reverse().map((d) => [d.cidr, d])).values()].reverse();
  return unique.sort((a, b) => cidrKey(a.cidr) - cidrKey(b.cidr));
}

/** An address or CIDR the schema accepted, as a block (an address is its /32). */
function asCidr(text: string): Ipv4Cidr {
  return parseIpv4Block(text) as Ipv4Cidr;
}

/** Sorts blocks by network address, then prefix length. */
function cidrKey(text: string): number {
  const c = asCidr(text);
  return c.network * 64 + c.prefix;
}

/** An allow-list destination inside an always-denied block would never open: refused, naming the block. */
function checkAllowAgainstDeny(r: Reporter, { site, networks, resolved }: GatewayInput): void {
  networks.forEach(({ ref }, i) => {
    const net = resolved[i]!;
    const deny = egressDenyList(site, resolved, net);
    for (const vm of net.vms) {
      vm.allow.forEach((a, j) => {
        if (a.to === undefined) return;
        const to = asCidr(a.to);
        // Wholly inside: a wider entry (0.0.0.0/0) still opens what lies outside the denied blocks.
        const hit = deny.find((d) => cidrWithin(to, asCidr(d.cidr)));
        if (hit) r.report(r.at(ref, "vms", vm.name, "allow", j, "to"), `${a.to} lies in ${hit.cidr} (${hit.why}), which network ${net.name} never reaches: this allow entry could open nothing`);
      });
    }
  });
}

/**
 * dnsmasq may hand out an address from its cache up to `dns_max_ttl` after
 * it put it in the set, and the VM may cache that answer as long again
 * (dnsmasq(8) --max-ttl caps the TTL it sends): an element must outlive
 * both, hence timeout >= 2 x max ttl.
 */
function checkTimeouts(r: Reporter, site: SiteSettings, siteRef: Ref): void {
  if (site.name_set_timeout >= 2 * site.dns_max_ttl) return;
  const written = siteRef.file.doc.getIn([...siteRef.path, "name_set_timeout"]) !== undefined ? "name_set_timeout" : "dns_max_ttl";
  r.report(
    r.at(siteRef, written),
    `name_set_timeout ${site.name_set_timeout} s is less than 2 x dns_max_ttl (2 x ${site.dns_max_ttl} s): an address may sit in dnsmasq's cache and then in the VM's for dns_max_ttl each, and would leave its name's set while still in use; set name_set_timeout to ${2 * site.dns_max_ttl} or more`,
  );
}

/**
 * The same VM name in two networks is one VM with a NIC in each. It runs on
 * one host, and only one of its networks may offer it a default route by
 * DHCP (two routers: two default routes, and the VM picks one at random).
 */
function checkVmNics(r: Reporter, { networks, resolved }: GatewayInput): void {
  const seen = new Map<string, { network: string; ref: Ref; host?: string; router: boolean }>();
  const routerRefs = new Map<string, { network: string; ref: Ref }>();
  networks.forEach(({ name, ref }, i) => {
    const net = resolved[i]!;
    const offersRoute = net.dhcp !== undefined && net.router;
    for (const vm of net.vms) {
      const vmRef = r.at(ref, "vms", vm.name);
      const first = seen.get(vm.name);
      if (first && first.host !== undefined && vm.host !== undefined && first.host !== vm.host) {
        r.report(r.at(vmRef, "host"), `VM ${vm.name} runs on ${first.host} in network ${first.network} (${r.where(first.ref)}); the NICs of one VM are on one host`);
      }
      if (!first) seen.set(vm.name, { network: name, ref: vmRef, host: vm.host, router: offersRoute });
      if (!offersRoute) continue;
      const router = routerRefs.get(vm.name);
      if (router) {
        r.report(
          vmRef,
          `VM ${vm.name} also has a NIC in network ${router.network} (${r.where(router.ref)}); both networks offer it a default route by DHCP and a VM gets one: set router: false on one of them`,
          { key: true },
        );
      } else routerRefs.set(vm.name, { network: name, ref: vmRef });
    }
  });
}

/** One backend listen block: the ports it takes, where it is written, whether it may shadow a reserved port. */
interface ListenBlock extends PortRange {
  proto: "tcp" | "udp";
  ref: Ref;
  force: boolean;
}

/**
 * The host parts a range forward maps, as contiguous address runs without
 * the gateway: every address but the network and broadcast ones (/31 and
 * /32: all, RFC 3021).
 */
export function rangeForwardRuns(cidr: Ipv4Cidr, gateway: string): { first: number; last: number }[] {
  const lo = cidr.prefix >= 31 ? cidr.first : cidr.first + 1;
  const hi = cidr.prefix >= 31 ? cidr.last : cidr.last - 1;
  const gw = ipv4ToInt(gateway);
  if (gw < lo || gw > hi) return [{ first: lo, last: hi }];
  return [
    ...(gw > lo ? [{ first: lo, last: gw - 1 }] : []),
    ...(gw < hi ? [{ first: gw + 1, last: hi }] : []),
  ];
}

function checkForwards(r: Reporter, { networks, resolved, hosts }: GatewayInput): void {
  const blocks: ListenBlock[] = [];
  networks.forEach(({ ref }, i) => {
    const net = resolved[i]!;
    net.port_forwards.forEach((pf, j) => {
      blocks.push({ proto: pf.proto, first: pf.listen, last: pf.listen, ref: r.at(ref, "port_forwards", j, "listen"), force: pf.force });
    });
    const cidr = parseIpv4Cidr(net.cidr) as Ipv4Cidr;
    net.port_ranges.forEach((pr, j) => {
      const at = r.at(ref, "port_ranges", j, "listen");
      const runs = rangeForwardRuns(cidr, net.gateway);
      if (runs.length === 0) return;
      const firstPart = runs[0]!.first - cidr.network;
      const lastPart = runs[runs.length - 1]!.last - cidr.network;
      const last = pr.listen + lastPart;
      if (last > 65535) {
        r.report(
          at,
          `listen ${pr.listen} + host part reaches ${last} for ${intToIpv4(cidr.network + lastPart)}, beyond 65535: ${net.cidr} has host parts up to ${lastPart}, so listen may be at most ${65535 - lastPart}`,
        );
        return;
      }
      blocks.push({ proto: pr.proto, first: pr.listen + firstPart, last, ref: at, force: pr.force });
    });
  });

  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    const earlier = blocks.slice(0, i).find((a) => a.proto === b.proto && portRangesOverlap(a, b));
    if (earlier) {
      const what = `backend ${b.proto} port${b.first === b.last ? "" : "s"} ${formatPortRange(b)}`;
      const same = b.first === earlier.first && b.last === earlier.last;
      r.report(b.ref, same ? `${what} ${b.first === b.last ? "is" : "are"} already forwarded at ${r.where(earlier.ref)}` : `${what} overlap${b.first === b.last ? "s" : ""} ${b.proto} ${formatPortRange(earlier)} forwarded at ${r.where(earlier.ref)}`);
    }
  }

  const backend = hosts.find((h) => h.value.role === "backend");
  if (!backend) return;
  const reservedAt = backend.origin?.get("reserved_ports");
  for (const b of blocks) {
    if (b.force) continue;
    const hit = (backend.value.reserved_ports ?? []).find((p) => p.proto === b.proto && portRangesOverlap(p, b));
    if (!hit) continue;
    r.report(
      b.ref,
      `backend ${b.proto} port${b.first === b.last ? "" : "s"} ${formatPortRange(b)} include${b.first === b.last ? "s" : ""} ${b.proto} ${formatPortRange(hit)}, reserved for the backend's own service (reserved_ports ${reservedAt ? `at ${r.where(reservedAt)}` : "default: tcp 22, its SSH"}); the forward would shadow it: pick another listen port or set force: true`,
    );
  }
}
