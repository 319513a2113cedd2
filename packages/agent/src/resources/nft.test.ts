import { describe, expect, it } from "vitest";
import { NftTableSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx, noFiles } from "./fixtures.ts";
import { cidrSet, nftTime } from "./nft-rules.ts";
import {
  desiredElements,
  foreignDrops,
  nftRuleset,
  nftStructure,
  nftTable,
  normaliseListing,
  parseExternalSubnets,
  parseNftTable,
  type NftObservation,
} from "./nft.ts";

/**
 * Fixtures: capture-gateway.sh applies nftRuleset(gateway-spec.json) with
 * nft 1.0.6 in a scratch namespace and lists it after each hand edit.
 */
const spec = NftTableSpec.parse(JSON.parse(fixture("nft/gateway-spec.json")));
const live = { externalSubnets: ["203.0.113.0/24"] };

function observed(name: string, foreign: string[] = []): NftObservation {
  return {
    ...parseNftTable(fixture(`nft/gateway-${name}.json`)),
    lines: normaliseListing(fixture(`nft/gateway-${name}.nft`)),
    externalSubnets: live.externalSubnets,
    missingExternal: [],
    foreign,
  };
}

/** The rules of one chain of the generated table, as normalised lines without the chain prefix. */
function chain(name: string, s = spec): string[] {
  const prefix = `chain ${name}: `;
  return normaliseListing(nftStructure(s, live).text)
    .filter((l) => l.startsWith(prefix) && !l.endsWith(": {"))
    .map((l) => l.slice(prefix.length));
}

describe("nft-table: drift of the whole table", () => {
  it("the table as nft 1.0.6 lists it right after the apply plans nothing (no flapping)", () => {
    expect(nftTable.plan(spec, observed("applied"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("name-set elements added by dnsmasq or `update` are not drift", () => {
    const o = observed("dynamic");
    expect(o.dynamic.dns_9a2a437a32e5!.map((e) => e.val)).toEqual(["192.0.2.99", "198.51.100.7"]);
    expect(nftTable.plan(spec, o, ctx).commands).toEqual([]);
  });

  it.each([
    ["inserted", { old: ['chain forward: iifname "bond0.1081" accept'], new: [] }],
    ["policy", { old: ["chain forward: type filter hook forward priority filter; policy drop;"], new: ["chain forward: type filter hook forward priority filter; policy accept;"] }],
  ])("a hand edit (%s) replans the whole table with the differing lines as before/after", (name, diff) => {
    const plan = nftTable.plan(spec, observed(name), ctx);
    expect(plan.changes).toEqual({ ruleset: diff });
    expect(plan.commands.map((c) => c.argv)).toEqual([["nft", "-f", "-"]]);
    expect(plan.commands[0]!.stdin).toBe(nftRuleset(spec, live, { dns_9a2a437a32e5: observed(name).dynamic.dns_9a2a437a32e5! }).text);
  });

  it("a flushed chain: its rules come back", () => {
    const plan = nftTable.plan(spec, observed("flushed"), ctx);
    const d = plan.changes.ruleset as { old: string[]; new: string[] };
    expect(d.old).toEqual([]);
    expect(d.new).toHaveLength(4);
    expect(d.new.every((l) => l.startsWith("chain prerouting: ") && l.includes(" dnat ip to "))).toBe(true);
  });

  it("a deleted deny rule comes back", () => {
    const d = nftTable.plan(spec, observed("deny-deleted"), ctx).changes.ruleset as { old: string[]; new: string[] };
    expect(d).toEqual({ old: [], new: [expect.stringMatching(/^chain out_service: ip daddr \{ .*10\.99\.0\.0\/24.* \} goto drop_service$/)] });
  });

  it("a deleted static element is added back in place, an extra one deleted, rules untouched", () => {
    expect(nftTable.plan(spec, observed("element"), ctx).commands[0]!.stdin).toBe("add element inet netfleet allow_tcp { 10.81.0.13 . 203.0.113.20 . 80 }\n");
    const extra = nftTable.plan(spec, observed("extra-element"), ctx);
    expect(extra.changes).toEqual({ allow_all_udp: { old: ["10.81.0.11 . 0.0.0.0/0"], new: [] } });
    expect(extra.commands[0]!.stdin).toBe("delete element inet netfleet allow_all_udp { 10.81.0.11 . 0.0.0.0/0 }\n");
  });

  it("a table replacement carries the name sets' live elements with their remaining time, in the same transaction", () => {
    const o = observed("dynamic");
    const text = nftTable.plan({ ...spec, forwards: [] }, o, ctx).commands[0]!.stdin!;
    expect(text.startsWith("table inet netfleet {}\ndelete table inet netfleet\ntable inet netfleet {\n")).toBe(true);
    const carried = /^add element inet netfleet dns_9a2a437a32e5 \{ (.*) \}$/m.exec(text)![1]!;
    // each with what it had left (captured seconds after dnsmasq's 90 s and the carried 60 s began)
    expect(carried).toMatch(/^192\.0\.2\.99 timeout 90s expires [6-8]\ds, 198\.51\.100\.7 timeout 90s expires [3-5]\ds$/);
    expect(text.indexOf("delete table")).toBeLessThan(text.indexOf(carried));
  });

  it("no table → created; a changed external subnet → the deny lists follow", () => {
    const none: NftObservation = { exists: false, elements: desiredElements({ ...spec, allow: [] }), lines: [], dynamic: {}, externalSubnets: [], missingExternal: [], foreign: [] };
    expect(Object.keys(nftTable.plan(spec, none, ctx).changes)).toEqual(["table"]);
    const moved = nftTable.plan(spec, { ...observed("applied"), externalSubnets: ["198.18.0.0/15"] }, ctx);
    expect((moved.changes.ruleset as { new: string[] }).new.join("\n")).toMatch(/out_service: ip daddr \{ .*198\.18\.0\.0\/15.* \} goto/);
  });
});

describe("nft-table: what the rules mean", () => {
  it("forward: policy accept; every other rule matches our interfaces, so other forwarding on the host is left alone", () => {
    const fwd = chain("forward");
    expect(fwd[0]).toBe("type filter hook forward priority filter; policy accept;");
    expect(fwd[1]).toMatch(/^ct state established,related accept comment "netfleet structure=[0-9a-f]{16}"$/);
    for (const rule of fwd.slice(2)) expect(rule).toMatch(/^(iifname|oifname) ("gw-(secure|service|datain)"|\{ "gw-datain", "gw-secure", "gw-service" \}) /);
    // Drops happen only in drop_<network>, reached by goto from rules on that network's interface.
    const all = normaliseListing(nftStructure(spec, live).text);
    const drops = all.filter((l) => / drop$/.test(l) && !l.includes("ct state invalid"));
    expect(drops.map((l) => l.split(": ")[0])).toEqual(["chain input", "chain from_vms", "chain drop_secure", "chain drop_service", "chain drop_datain"]);
    for (const n of spec.networks) {
      for (const l of all.filter((x) => x.includes(`goto drop_${n.name}`) && x.startsWith("chain forward"))) expect(l).toContain(`oifname "${n.interface}"`);
      expect(fwd).toContain(`iifname "${n.interface}" jump out_${n.name}`);
    }
  });

  it("deny precedes every accept, for open and allowlist networks; open networks also deny the external subnets", () => {
    for (const n of spec.networks) {
      const out = chain(`out_${n.name}`);
      expect(out[0]).toMatch(new RegExp(`^ip daddr \\{ .* \\} goto drop_${n.name}$`));
      expect(out.findIndex((l) => l.endsWith(" accept") || l.endsWith(` goto allow_${n.name}`))).toBeGreaterThan(0);
      expect(out.at(-1)).toBe(`goto drop_${n.name}`);
      for (const d of n.deny) expect(out[0]).toContain(d);
      expect(out[0]!.includes("203.0.113.0/24")).toBe(n.egress === "open");
    }
    expect(chain("out_service")[1]).toBe('oifname { "wan0", "wan1" } goto allow_service');
  });

  it("allowlist: static sets and the name set only, out of the external interfaces; the name set is refreshed on use", () => {
    const out = chain("out_secure");
    expect(out.slice(1, -1).every((l) => l.startsWith('oifname { "wan0", "wan1" } ') && l.endsWith("goto allow_secure"))).toBe(true);
    expect(out).toContain('oifname { "wan0", "wan1" } ip saddr 10.81.0.21 ip daddr @dns_9a2a437a32e5 tcp dport { 443, 80 } update @dns_9a2a437a32e5 { ip daddr } goto allow_secure');
    expect(normaliseListing(nftStructure(spec, live).text).filter((l) => l.startsWith("set dns_9a2a437a32e5: "))).toEqual([
      "set dns_9a2a437a32e5: {",
      "set dns_9a2a437a32e5: type ipv4_addr",
      "set dns_9a2a437a32e5: size 65535",
      "set dns_9a2a437a32e5: flags dynamic,timeout",
      "set dns_9a2a437a32e5: timeout 1m30s",
    ]);
  });

  it("audit: drops logged rate-limited before the drop, with the network's prefix and group; no group → no log", () => {
    expect(chain("drop_secure")).toEqual(['limit rate 100/second log prefix "nf drop secure " group 81', "counter drop"]);
    // new connections logged at most 1000/s per network (a VM opening flows cannot flood the audit), and accepted either way
    expect(chain("allow_secure")).toEqual(['limit rate 1000/second log prefix "nf allow secure " group 81', "accept"]);
    expect(chain("allow_datain")).toEqual([]); // no audit on datain: its accepts are plain
    expect(chain("drop_datain")).toEqual(["counter drop"]);
    expect(chain("out_datain").join("\n")).not.toContain("log");
  });

  it("gateway services: DHCP, DNS, echo and the listed ports on the own gateway only; the rest from our VMs dropped", () => {
    const vms = chain("from_vms");
    expect(vms.filter((l) => l.includes('"gw-secure"'))).toEqual([
      'iifname "gw-secure" ip daddr { 10.81.0.1, 255.255.255.255 } udp sport 68 udp dport 67 accept',
      'iifname "gw-secure" ip daddr 10.81.0.1 udp dport 53 accept',
      'iifname "gw-secure" ip daddr 10.81.0.1 tcp dport 53 accept',
      'iifname "gw-secure" ip daddr 10.81.0.1 icmp type echo-request accept',
      'iifname "gw-secure" ip daddr 10.81.0.1 tcp dport 8080 accept',
    ]);
    expect(vms).toContain('iifname "gw-service" ip daddr 10.82.0.1 udp dport 9000-9010 accept');
    expect(vms.filter((l) => l.includes("gw-datain")).some((l) => /dport (?!53 |67 )/.test(l))).toBe(false);
    expect(vms.at(-1)).toBe("counter drop");
    expect(vms.filter((l) => l.includes("dport 67"))).toHaveLength(3); // DHCP per network, to its own gateway or broadcast
    // the gateways answer on their own networks (and lo) only: not from outside, management or a VPN
    expect(chain("input")).toEqual([
      "type filter hook input priority filter; policy accept;",
      'iifname { "gw-datain", "gw-secure", "gw-service" } jump from_vms',
      'iifname != { "gw-datain", "gw-secure", "gw-service", "lo" } ip daddr { 10.81.0.1, 10.82.0.1, 10.83.0.1 } counter drop',
    ]);
  });

  it("overlapping allow entries of one VM and port are reduced to the wider block (an interval set refuses overlaps: the whole table would fail)", () => {
    const wide = { ...spec, allow: [
      { vm: "10.81.0.11", to: "198.51.100.0/28", proto: "tcp" as const, ports: [443] },
      { vm: "10.81.0.11", to: "198.51.100.5", proto: "tcp" as const, ports: [443, 80] },
      { vm: "10.81.0.11", to: "0.0.0.0/0", proto: "udp" as const },
      { vm: "10.81.0.11", to: "192.0.2.1", proto: "udp" as const },
      { vm: "10.81.0.12", to: "198.51.100.5", proto: "tcp" as const, ports: [443] },
    ] };
    const e = desiredElements(wide);
    expect(e.allow_tcp).toEqual(["10.81.0.11 . 198.51.100.0/28 . 443", "10.81.0.11 . 198.51.100.5 . 80", "10.81.0.12 . 198.51.100.5 . 443"]);
    expect(e.allow_all_udp).toEqual(["10.81.0.11 . 0.0.0.0/0"]);
  });

  it("port-forwards: a range maps listen ports onto consecutive VMs, `from` limits sources, all external interfaces, DNAT'd flows to the targets only", () => {
    const pre = chain("prerouting");
    const map = "dnat ip to tcp dport map { 22001 : 10.83.0.100 . 22, 22002 : 10.83.0.101 . 22, 22003 : 10.83.0.102 . 22, 22004 : 10.83.0.103 . 22 }";
    expect(pre).toContain(`iifname { "wan0", "wan1" } ip saddr { 10.81.0.0/24, 198.51.100.0/24 } tcp dport 22001-22004 ${map}`);
    expect(pre).toContain('iifname { "wan0", "wan1" } tcp dport 2222 dnat ip to 10.82.0.12:22');
    expect(chain("forward")).toContain('oifname "gw-datain" ip daddr 10.83.0.100-10.83.0.103 tcp dport 22 ct status dnat accept');
  });

  it("hairpin: from open networks to the host's own addresses except the gateways, masqueraded back; never from an allowlist network (a way past its list)", () => {
    const hair = chain("prerouting").filter((l) => l.includes("fib daddr type local"));
    expect(hair).toHaveLength(2);
    for (const l of hair) expect(l).toMatch(/^iifname \{ "gw-datain", "gw-service" \} fib daddr type local ip daddr != \{ 10\.81\.0\.1, 10\.82\.0\.1, 10\.83\.0\.1 \} /);
    for (const l of hair) expect(l).not.toContain("gw-secure");
    expect(chain("postrouting")).toEqual([
      "type nat hook postrouting priority srcnat; policy accept;",
      'oifname { "wan0", "wan1" } ip saddr { 10.81.0.0/24, 10.82.0.0/24, 10.83.0.0/24 } masquerade',
      'oifname { "gw-datain", "gw-secure", "gw-service" } ip saddr { 10.81.0.0/24, 10.82.0.0/24, 10.83.0.0/24 } ct status dnat masquerade',
    ]);
  });
});

describe("nft-table: neighbours and inputs", () => {
  const ours = spec.networks.map((n) => n.interface);

  it("reports foreign tables that may drop our traffic: policy drop without an accept for us, unscoped drop/reject rules", () => {
    expect(foreignDrops(fixture("nft/gateway-foreign-ruleset.json"), ours)).toEqual([
      "foreign-drop: table ip filter chain FORWARD (hook forward, priority 0, policy drop)",
      "foreign-drop: table inet vpn chain vpn_guard (from forward_vpn, hook forward, priority 10): rule handle 5 rejects",
    ]);
    expect(foreignDrops(fixture("nft/gateway-empty-ruleset.json"), ours)).toEqual([]);
  });

  it("a VXLAN device's source filter of ours is no foreign drop; the same rule without our mark is (real nft 1.0.6 ruleset)", () => {
    const ruleset = fixture("nft/gateway-vxlan-ruleset.json");
    // Positive control: without knowing our mark, both input-hook drops are reported.
    expect(foreignDrops(ruleset, ours)).toEqual([
      "foreign-drop: table inet netfleet-vx-secure chain input (hook input, priority 0): rule handle 3 drops",
      "foreign-drop: table inet vxguard chain input (hook input, priority 0): rule handle 2 drops",
    ]);
    expect(foreignDrops(ruleset, ours, undefined, "netfleet-owner=lab")).toEqual(["foreign-drop: table inet vxguard chain input (hook input, priority 0): rule handle 2 drops"]);
    // Another site's mark is not ours.
    expect(foreignDrops(ruleset, ours, undefined, "netfleet-owner=other")).toHaveLength(2);
  });

  it("the notes ride on the plan's comment, converged or not, and block nothing", () => {
    const notes = foreignDrops(fixture("nft/gateway-foreign-ruleset.json"), ours);
    const plan = nftTable.plan(spec, observed("applied", notes), ctx);
    expect(plan).toEqual({ changes: {}, commands: [], comment: notes.join("; ") });
    expect(plan.comment!.startsWith("foreign-drop: table ip filter chain FORWARD")).toBe(true);
  });

  it("external subnets from `ip -j addr show dev wan0`, in network form", () => {
    expect(parseExternalSubnets(fixture("nft/gateway-wan0-addr.json"))).toEqual(["198.18.0.0/15", "203.0.113.0/24"]);
  });

  it("nft's time and interval-set forms", () => {
    expect([90, 3600, 3660, 86400 + 5].map(nftTime)).toEqual(["1m30s", "1h", "1h1m", "1d5s"]);
    expect(cidrSet(["10.99.0.0/24", "10.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "192.0.2.7/32"])).toEqual(["10.0.0.0/8", "169.254.0.0/16", "192.0.2.7"]);
  });

  it("observe: the table (terse text), the ruleset (our elements, foreign tables) and each external interface's addresses; a missing interface is a warning", async () => {
    const answers: Record<string, { stdout: string; exitCode: number; stderr: string }> = {
      "nft -t list table inet netfleet": { stdout: fixture("nft/gateway-applied.nft"), exitCode: 0, stderr: "" },
      "nft -j list ruleset": { stdout: fixture("nft/gateway-foreign-ruleset.json"), exitCode: 0, stderr: "" },
      "ip -j addr show dev wan0": { stdout: fixture("nft/gateway-wan0-addr.json"), exitCode: 0, stderr: "" },
      "ip -j addr show dev wan1": { stdout: "", exitCode: 1, stderr: 'Device "wan1" does not exist.\n' },
    };
    const o = await nftTable.observe(spec, { ...ctx, ...noFiles, read: async (argv) => answers[argv.join(" ")]! });
    expect(o.externalSubnets).toEqual(["198.18.0.0/15", "203.0.113.0/24"]);
    expect(o.missingExternal).toEqual(["wan1"]);
    expect(o.foreign).toHaveLength(2);
    // our table's elements come from the same ruleset listing, not the foreign tables'
    expect(o.elements).toEqual(parseNftTable(fixture("nft/gateway-applied.json")).elements);
    expect(o.dynamic.dns_9a2a437a32e5!.map((e) => e.val)).toEqual(["198.51.100.7"]);
    const plan = nftTable.plan(spec, o, ctx);
    // wan0's second subnet joins the open networks' deny lists
    const added = (plan.changes.ruleset as { new: string[] }).new.filter((l) => l.includes("198.18.0.0/15"));
    expect(added.map((l) => l.split(": ")[0])).toEqual(["chain out_service", "chain out_datain"]);
    expect(plan.comment).toMatch(/^foreign-drop: .*; foreign-drop: .*; warning: external interface wan1 does not exist/);
  });

  it("a host without our table or any ruleset (netfleet plan's empty host): the whole table, no notes; the absent observation is what observe sees there", async () => {
    // nft's answer without a ruleset (__fixtures__/nft/table-missing.json.stderr); the external interface has no address yet
    const read = async (argv: string[]) => (argv[0] === "nft" ? { stdout: "", exitCode: 1, stderr: fixture("nft/table-missing.json.stderr") } : { stdout: "[]", exitCode: 0, stderr: "" });
    const o = await nftTable.observe(spec, { ...ctx, ...noFiles, read });
    expect(o).toMatchObject({ exists: false, foreign: [], externalSubnets: [] });
    expect(nftTable.absent(spec)).toEqual(o);
    const plan = nftTable.plan(spec, o, ctx);
    expect(plan.comment).toBeUndefined();
    expect(plan.commands[0]!.stdin).toContain('chain out_service {');
  });
});
