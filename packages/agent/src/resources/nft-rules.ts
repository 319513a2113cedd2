import { cidrContains, cidrWithin, intToIpv4, ipv4ToInt, parseIpv4Block, sha256Hex, type EgressRule, type ForwardSpec, type NftTableSpec } from "@netfleet/shared";

/**
 * The table `inet netfleet` as text, written in the form `nft list table`
 * prints (nft 1.0.6): one statement per line, sets' properties one per
 * line, single-element anonymous sets bare, times as `1h30m`. Printed form
 * is valid nft input, so the same text is what `nft -f` applies and what
 * the live listing is compared with (see nft-live.ts normaliseListing):
 * any hand edit of the live table shows as a differing line.
 *
 * Shape of what it builds (sources: nft(8) "STATEMENTS", "SETS", "MAPS"):
 * - forward (filter, policy accept): decides only for traffic entering or
 *   leaving our networks' interfaces; everything else the host forwards is
 *   left to other tables (Docker, libvirt NAT, VPNs).
 *   established/related accept → DNAT'd flows to their targets accept →
 *   per network `iifname X jump out_X` → per network `oifname X goto drop_X`.
 * - out_X: deny list first (`goto drop_X`), then the egress accepts
 *   (open: any destination out of the external interfaces; allowlist: the
 *   static sets and the name sets, the latter refreshed with `update`),
 *   then `goto drop_X`.
 * - drop_X: `limit rate 100/second log prefix "nf drop X " group G` (audit), `counter drop`.
 * - input/from_vms: DHCP, DNS and ICMP echo to the own gateway, the
 *   network's gateway services, nothing else from our interfaces.
 * - prerouting (nat): port-forwards on every external interface, limited
 *   to `from`; hairpin from our interfaces to the host's own addresses
 *   (`fib daddr type local`) except the gateways, limited to `from` too (a
 *   forward with `from` is hairpinned only for the VM sources it lists).
 *   IPv6 from our interfaces meets no accept in allowlist networks; open
 *   networks' deny lists are IPv4 (the gateways offer no IPv6 route).
 * - postrouting (nat): masquerade out of every external interface; masquerade
 *   of hairpinned flows (source one of our networks, DNAT'd, back into one of
 *   our interfaces) so replies come back through the backend.
 */

/** The static allow sets, by protocol: `vm . destination . port`, or `vm . destination` for all ports. */
export const STATIC_SETS = ["allow_tcp", "allow_udp", "allow_all_tcp", "allow_all_udp"] as const;
/** One of the static allow sets. */
export type StaticSet = (typeof STATIC_SETS)[number];

/** The rule comment that marks the table as ours and carries the structure hash (prune reads it). */
export const MARK = "netfleet structure=";

/** Drop logging rate per network (nft `limit rate`), packets per second. */
export const DROP_LOG_RATE = 100;

/**
 * Logging rate of new outbound connections per network (nft `limit rate`),
 * per second: a VM opening flows as fast as it can must not flood the
 * audit stream (and evict older records); connections over the rate are
 * still accepted, unlogged.
 */
export const ALLOW_LOG_RATE = 1000;

/** Audit log prefixes, as the nflog collector (packages/agent/src/gateway/audit-nflog.ts) parses them. */
export const auditPrefix = (verdict: "allow" | "drop", network: string) => `nf ${verdict} ${network} `;

/** What the agent read live that shapes the table: the external interfaces' own subnets (a.b.c.d/len, network form). */
export interface NftLiveInputs {
  externalSubnets: string[];
}

const q = (s: string) => `"${s}"`;
const bare = (addr: string) => addr.replace(/\/32$/, "");

/** An nft value list: one element bare, several as an anonymous set (nft prints a single element without braces). */
export function anySet(items: readonly string[]): string {
  const u = [...new Set(items)];
  return u.length === 1 ? u[0]! : `{ ${u.join(", ")} }`;
}

/**
 * nft's time format (`nft list` prints 3600 s as `1h`, 90 s as `1m30s`):
 * days, hours, minutes, seconds, the zero parts left out.
 */
export function nftTime(seconds: number): string {
  const parts: [number, string][] = [
    [Math.floor(seconds / 86400), "d"],
    [Math.floor((seconds % 86400) / 3600), "h"],
    [Math.floor((seconds % 3600) / 60), "m"],
    [seconds % 60, "s"],
  ];
  const text = parts.filter(([n]) => n > 0).map(([n, u]) => `${n}${u}`).join("");
  return text || "0s";
}

/**
 * CIDRs/addresses reduced to an interval set nft accepts: duplicates and
 * blocks inside another block removed (overlapping intervals are refused
 * by nft in one set), sorted by address, /32 written bare.
 */
export function cidrSet(items: readonly string[]): string[] {
  const blocks = [...new Set(items)]
    .map((t) => {
      const c = parseIpv4Block(t);
      if (typeof c === "string") throw new Error(`not a CIDR: ${t}: ${c}`);
      return c;
    })
    .sort((a, b) => a.first - b.first || b.last - a.last);
  const kept: typeof blocks = [];
  for (const b of blocks) if (!kept.some((k) => cidrWithin(b, k))) kept.push(b);
  return kept.map((b) => (b.prefix === 32 ? intToIpv4(b.network) : `${intToIpv4(b.network)}/${b.prefix}`));
}

/** Elements of the static sets, as nft prints them (`a . b . 80`, `a . b/28`), sorted. */
export function desiredElements(spec: NftTableSpec): Record<StaticSet, string[]> {
  const out: Record<StaticSet, string[]> = { allow_tcp: [], allow_udp: [], allow_all_tcp: [], allow_all_udp: [] };
  // Destinations grouped by (set, vm, port) and reduced with cidrSet: an interval set refuses
  // overlapping elements ("File exists"), so 198.51.100.5 beside 198.51.100.0/28 for the same VM
  // and port would abort the whole transaction. The wider block already allows the narrower one.
  const groups = new Map<string, { set: StaticSet; head: string; tail: string; to: string[] }>();
  const add = (set: StaticSet, vm: string, port: string | undefined, to: string) => {
    const key = `${set} ${vm} ${port ?? ""}`;
    const g = groups.get(key) ?? { set, head: vm, tail: port === undefined ? "" : ` . ${port}`, to: [] };
    g.to.push(to);
    groups.set(key, g);
  };
  for (const r of spec.allow) {
    if (!r.to) continue;
    if (r.ports?.length) for (const p of r.ports) add(`allow_${r.proto}`, r.vm, String(p), r.to);
    else add(`allow_all_${r.proto}`, r.vm, undefined, r.to);
  }
  for (const g of groups.values()) for (const to of cidrSet(g.to)) out[g.set].push(`${g.head} . ${bare(to)}${g.tail}`);
  for (const k of STATIC_SETS) out[k] = [...new Set(out[k])].sort();
  return out;
}

/** Whether `ip` is in `cidr` (a network, or a bare address: that one). */
function inCidr(ip: string, cidr: string): boolean {
  const c = parseIpv4Block(cidr);
  return typeof c !== "string" && cidrContains(c, ipv4ToInt(ip));
}

/** The VM addresses of a forward: `vm` and the `count - 1` following ones. */
export function forwardTargets(f: ForwardSpec): string[] {
  const first = ipv4ToInt(f.vm);
  return Array.from({ length: f.count }, (_, i) => intToIpv4(first + i));
}

/** `tcp dport 22001-22003 dnat ip to tcp dport map { ... }` (count > 1) or `tcp dport 2222 dnat ip to 10.82.0.12:22`. */
function dnatStatement(f: ForwardSpec): string {
  if (f.count === 1) return `${f.proto} dport ${f.listen} dnat ip to ${f.vm}:${f.port}`;
  const map = forwardTargets(f).map((vm, i) => `${f.listen + i} : ${vm} . ${f.port}`);
  return `${f.proto} dport ${f.listen}-${f.listen + f.count - 1} dnat ip to ${f.proto} dport map { ${map.join(", ")} }`;
}

/** The deny list of a network as applied: the spec's, plus the external subnets for open egress. */
export function effectiveDeny(n: NftTableSpec["networks"][number], live: NftLiveInputs): string[] {
  return cidrSet([...n.deny, ...(n.egress === "open" ? live.externalSubnets : [])]);
}

function nameSetRules(spec: NftTableSpec, n: NftTableSpec["networks"][number], ext: string, allow: string): string[] {
  const out: string[] = [];
  for (const r of spec.allow.filter((x): x is EgressRule & { set: string } => x.set !== undefined)) {
    if (!inCidr(r.vm, n.cidr)) continue;
    const ports = r.ports?.length ? `${r.proto} dport ${anySet(r.ports.map(String))}` : `meta l4proto ${r.proto}`;
    // `update` (re)starts the element's timeout on each new connection to it: an address in use never lapses.
    out.push(`oifname ${ext} ip saddr ${r.vm} ip daddr @${r.set} ${ports} update @${r.set} { ip daddr } ${allow}`);
  }
  return out;
}

/**
 * The table's sets and chains, without the elements of any set (static
 * elements are added after it, name-set elements come from dnsmasq and are
 * carried over by the plan). `@HASH@` stands for the structure hash.
 */
export function nftStructureTemplate(spec: NftTableSpec, live: NftLiveInputs): string {
  const exts = anySet(spec.externalInterfaces.map(q));
  const ours = anySet(spec.networks.map((n) => q(n.interface)));
  const L: string[] = [];
  const block = (head: string, body: string[]) => {
    L.push(`\t${head} {`, ...body.map((l) => `\t\t${l}`), "\t}", "");
  };
  L.push("table inet netfleet {");
  for (const s of STATIC_SETS) {
    const type = s.startsWith("allow_all") ? "ipv4_addr . ipv4_addr" : "ipv4_addr . ipv4_addr . inet_service";
    block(`set ${s}`, [`type ${type}`, "flags interval"]);
  }
  for (const s of spec.dnsSets) {
    block(`set ${s}`, ["type ipv4_addr", "size 65535", "flags dynamic,timeout", `timeout ${nftTime(spec.dnsSetTimeout)}`]);
  }
  if (spec.networks.length) {
    // The gateway addresses answer on their own networks only: Linux accepts a packet for any
    // local address on any interface (the weak host model), so without this the outside, the
    // management network or a VPN would reach each network's DNS and gateway services.
    const gatewaysIn = anySet(cidrSet(spec.networks.map((n) => n.gateway)));
    const oursAndLo = anySet([...spec.networks.map((n) => q(n.interface)), q("lo")].sort());
    block("chain input", [
      "type filter hook input priority filter; policy accept;",
      `iifname ${ours} jump from_vms`,
      `iifname != ${oursAndLo} ip daddr ${gatewaysIn} counter drop`,
    ]);
    const fromVms = ["ct state established,related accept"];
    for (const n of spec.networks) {
      const at = `iifname ${q(n.interface)} ip daddr ${n.gateway}`;
      // DHCP (RFC 2131): a client broadcasts until it has an address, then renews unicast to the server.
      fromVms.push(`iifname ${q(n.interface)} ip daddr { ${n.gateway}, 255.255.255.255 } udp sport 68 udp dport 67 accept`);
      fromVms.push(`${at} udp dport 53 accept`, `${at} tcp dport 53 accept`, `${at} icmp type echo-request accept`);
      for (const s of n.services) {
        const ports = s.ports.first === s.ports.last ? `${s.ports.first}` : `${s.ports.first}-${s.ports.last}`;
        fromVms.push(`${at} ${s.proto} dport ${ports} accept`);
      }
      // One VM's own services (a profile's gateway_services): its address only, which anti-spoofing pins to its port.
      for (const s of n.vmServices ?? []) {
        const ports = s.ports.first === s.ports.last ? `${s.ports.first}` : `${s.ports.first}-${s.ports.last}`;
        fromVms.push(`${at} ip saddr ${s.vm} ${s.proto} dport ${ports} accept`);
      }
    }
    fromVms.push("counter drop");
    block("chain from_vms", fromVms);
  }
  const forward = ["type filter hook forward priority filter; policy accept;", `ct state established,related accept comment "${MARK}@HASH@"`];
  if (spec.networks.length) {
    forward.push(`iifname ${ours} ct state invalid drop`, `oifname ${ours} ct state invalid drop`);
    // A port-forward (or its hairpin) reaches its targets only: DNAT'd, to the VM addresses and port.
    for (const f of spec.forwards) {
      const t = forwardTargets(f);
      const daddr = t.length === 1 ? t[0]! : `${t[0]}-${t[t.length - 1]}`;
      forward.push(`oifname ${q(f.interface)} ip daddr ${daddr} ${f.proto} dport ${f.port} ct status dnat accept`);
    }
    for (const n of spec.networks) forward.push(`iifname ${q(n.interface)} jump out_${n.name}`);
    for (const n of spec.networks) forward.push(`oifname ${q(n.interface)} goto drop_${n.name}`);
  }
  block("chain forward", forward);
  for (const n of spec.networks) {
    // With audit, accepts go through allow_<network>: a rate-limited log, then accept.
    const allow = n.auditGroup !== undefined ? `goto allow_${n.name}` : "accept";
    const out: string[] = [];
    const deny = effectiveDeny(n, live);
    if (deny.length) out.push(`ip daddr ${anySet(deny)} goto drop_${n.name}`);
    if (n.egress === "open") {
      out.push(`oifname ${exts} ${allow}`);
    } else {
      out.push(`oifname ${exts} ip saddr . ip daddr . tcp dport @allow_tcp ${allow}`);
      out.push(`oifname ${exts} ip saddr . ip daddr . udp dport @allow_udp ${allow}`);
      out.push(`oifname ${exts} meta l4proto tcp ip saddr . ip daddr @allow_all_tcp ${allow}`);
      out.push(`oifname ${exts} meta l4proto udp ip saddr . ip daddr @allow_all_udp ${allow}`);
      out.push(...nameSetRules(spec, n, exts, allow));
    }
    out.push(`goto drop_${n.name}`);
    block(`chain out_${n.name}`, out);
    if (n.auditGroup !== undefined) {
      block(`chain allow_${n.name}`, [`limit rate ${ALLOW_LOG_RATE}/second log prefix "${auditPrefix("allow", n.name)}" group ${n.auditGroup}`, "accept"]);
    }
    const drop: string[] = [];
    if (n.auditGroup !== undefined) drop.push(`limit rate ${DROP_LOG_RATE}/second log prefix "${auditPrefix("drop", n.name)}" group ${n.auditGroup}`);
    drop.push("counter drop");
    block(`chain drop_${n.name}`, drop);
  }
  const pre = ["type nat hook prerouting priority dstnat; policy accept;"];
  const gateways = anySet(cidrSet(spec.networks.map((n) => n.gateway)));
  // Hairpin only from open-egress networks: for an allowlist network a forward would be a way
  // out past its allow list (into another network's VM, unaudited).
  const open = spec.networks.filter((n) => n.egress === "open");
  const openIfaces = anySet(open.map((n) => q(n.interface)));
  for (const f of spec.forwards) {
    const from = f.from.length ? ` ip saddr ${anySet(cidrSet(f.from))}` : "";
    pre.push(`iifname ${exts}${from} ${dnatStatement(f)}`);
    if (open.length) pre.push(`iifname ${openIfaces} fib daddr type local ip daddr != ${gateways}${from} ${dnatStatement(f)}`);
  }
  block("chain prerouting", pre);
  const post = ["type nat hook postrouting priority srcnat; policy accept;"];
  if (spec.networks.length) {
    const cidrs = anySet(cidrSet(spec.networks.map((n) => n.cidr)));
    post.push(`oifname ${exts} ip saddr ${cidrs} masquerade`);
    if (spec.forwards.length) post.push(`oifname ${ours} ip saddr ${cidrs} ct status dnat masquerade`);
  }
  block("chain postrouting", post);
  L.pop();
  L.push("}");
  return L.join("\n") + "\n";
}

/** The structure text with its hash filled in, and the hash (sha256 of the template, 16 hex digits). */
export function nftStructure(spec: NftTableSpec, live: NftLiveInputs): { text: string; hash: string } {
  const template = nftStructureTemplate(spec, live);
  const hash = sha256Hex(template).slice(0, 16);
  return { text: template.replace("@HASH@", hash), hash };
}

/** A live name-set element to carry over a table replacement: its address and seconds until it expires. */
export interface CarriedElement {
  val: string;
  expires: number;
}

/**
 * The whole ruleset file: create-or-keep, delete, recreate, static
 * elements, and the name sets' live elements with their remaining time
 * (`timeout T expires E`, accepted by nft 1.0.6 on add) — one atomic
 * `nft -f` transaction, so no packet sees an empty set.
 */
export function nftRuleset(spec: NftTableSpec, live: NftLiveInputs, carried: Record<string, CarriedElement[]> = {}): { text: string; hash: string } {
  const { text: body, hash } = nftStructure(spec, live);
  const elements = desiredElements(spec);
  let text = `table inet netfleet {}\ndelete table inet netfleet\n${body}`;
  for (const set of STATIC_SETS) {
    if (elements[set].length) text += `add element inet netfleet ${set} { ${elements[set].join(", ")} }\n`;
  }
  for (const set of spec.dnsSets) {
    const keep = (carried[set] ?? []).filter((e) => e.expires > 0);
    if (!keep.length) continue;
    const t = spec.dnsSetTimeout;
    text += `add element inet netfleet ${set} { ${keep.map((e) => `${e.val} timeout ${t}s expires ${Math.min(e.expires, t)}s`).join(", ")} }\n`;
  }
  return { text, hash };
}
