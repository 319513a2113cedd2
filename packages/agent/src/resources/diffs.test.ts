import { describe, expect, it } from "vitest";
import { NftTableSpec, cutDiff, type DnsmasqSpec, type LibvirtNetworkSpec, type VmPortPolicySpec } from "@netfleet/shared";
import { dnsmasq, dnsmasqConf, dnsmasqFiles, dnsmasqHosts, dnsmasqUser } from "./dnsmasq.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { canonicalXml, libvirtNetwork, networkXml, parseNetInfo, parseNetworkXml } from "./libvirt.ts";
import { listingText, nftTable, normaliseListing, parseNftTable, type NftObservation } from "./nft.ts";
import { parseFlows, type Flow } from "./openflow.ts";
import { parseOvsState } from "./ovsdb.ts";
import { desiredFlows, vmPortPolicy, vmPortsOf, type VmPortObservation } from "./vm-port-policy.ts";

/** The lines of a diff that remove (`-`) or add (`+`), headers left out. */
const edits = (diff: string | undefined) => (diff ?? "").split("\n").filter((l) => /^[-+](?![-+]{2} )/.test(l));

describe("nft-table: the ruleset as a unified diff (fixtures: nft 1.0.6 listings of gateway-spec.json, capture-gateway.sh)", () => {
  const spec = NftTableSpec.parse(JSON.parse(fixture("nft/gateway-spec.json")));
  const observed = (name: string): NftObservation => ({
    ...parseNftTable(fixture(`nft/gateway-${name}.json`)),
    lines: normaliseListing(fixture(`nft/gateway-${name}.nft`)),
    externalSubnets: ["203.0.113.0/24"],
    missingExternal: [],
    foreign: [],
  });

  it("the listing put back together reads as nft prints it, and the applied table gives no diff", () => {
    const text = listingText(observed("applied").lines);
    expect(text.split("\n").slice(0, 3)).toEqual(["table inet netfleet {", "\tset allow_tcp: {".replace(": {", " {"), "\t\ttype ipv4_addr . ipv4_addr . inet_service"]);
    expect(normaliseListing(text)).toEqual(observed("applied").lines);
    expect(nftTable.plan(spec, observed("applied"), ctx).diff).toBeUndefined();
  });

  it("a rule inserted by hand: one '-' line in chain forward, with its context, under --- live / +++ desired headers", () => {
    const plan = nftTable.plan(spec, observed("inserted"), ctx);
    expect(plan.diff!.split("\n").slice(0, 2)).toEqual(["--- live: nft list table inet netfleet", "+++ desired: table inet netfleet"]);
    expect(edits(plan.diff)).toEqual(['-\t\tiifname "bond0.1081" accept']);
    expect(plan.diff).toMatch(/^@@ -\d+,\d+ \+\d+,\d+ @@$/m);
    // Every other field keeps real values: the lines themselves.
    expect(plan.changes.ruleset).toEqual({ old: ['chain forward: iifname "bond0.1081" accept'], new: [] });
  });

  it("a chain's policy changed by hand: old and new policy line", () => {
    expect(edits(nftTable.plan(spec, observed("policy"), ctx).diff)).toEqual([
      "-\t\ttype filter hook forward priority filter; policy drop;",
      "+\t\ttype filter hook forward priority filter; policy accept;",
    ]);
  });

  it("a port-forward moved to another listen port is visible: the DNAT and its accept rule, old and new", () => {
    const moved = { ...spec, forwards: spec.forwards.map((f) => (f.listen === 2222 ? { ...f, listen: 2223 } : f)) };
    const e = edits(nftTable.plan(moved, observed("applied"), ctx).diff);
    expect(e.some((l) => l.startsWith("-") && l.includes("dport 2222 dnat ip to 10.82.0.12:22"))).toBe(true);
    expect(e.some((l) => l.startsWith("+") && l.includes("dport 2223 dnat ip to 10.82.0.12:22"))).toBe(true);
    // the structure mark changes with it; nothing else
    expect(e.filter((l) => !/dport 222[23]|structure=/.test(l))).toEqual([]);
  });

  it("a port-forward's allowed sources changed is visible too", () => {
    const narrowed = { ...spec, forwards: spec.forwards.map((f) => (f.listen === 22001 ? { ...f, from: ["198.51.100.0/24"] } : f)) };
    const e = edits(nftTable.plan(narrowed, observed("applied"), ctx).diff);
    expect(e.some((l) => l.startsWith("-") && l.includes("10.81.0.0/24") && l.includes("22001"))).toBe(true);
    expect(e.some((l) => l.startsWith("+") && l.includes("22001") && !l.includes("10.81.0.0/24"))).toBe(true);
  });

  it("no table yet: the whole table as added lines, and the table field names it (no bare hash)", () => {
    const plan = nftTable.plan(spec, nftTable.absent(spec), ctx);
    const e = edits(plan.diff);
    expect(e[0]).toBe("+table inet netfleet {");
    expect(e.every((l) => l.startsWith("+"))).toBe(true);
    expect(plan.changes.table!.new).toMatch(/^inet netfleet \(\d+ lines, mark structure=[0-9a-f]{16}\)$/);
  });

  it("a static allow-set element added by hand: the set's elements as a diff, and as old/new element lists", () => {
    const o = observed("extra-element");
    const plan = nftTable.plan(spec, o, ctx);
    expect(plan.diff!.split("\n").slice(0, 2)).toEqual(["--- live: static set elements", "+++ desired: static set elements"]);
    expect(edits(plan.diff).every((l) => l.startsWith("-set allow_"))).toBe(true);
    expect(Object.values(plan.changes).every((c) => Array.isArray(c.old) && Array.isArray(c.new))).toBe(true);
  });
});

describe("dnsmasq: config and hosts file as unified diffs", () => {
  const spec: DnsmasqSpec = {
    kind: "dnsmasq",
    name: "secure",
    interface: "gw-secure",
    address: "10.81.0.1",
    netmask: "255.255.255.0",
    domain: "secure.lab.test",
    dhcp: { start: "10.81.0.100", end: "10.81.0.199", leaseTime: "1h" },
    router: true,
    mtu: 1500,
    maxTtl: 600,
    hosts: [{ name: "vma1", mac: "52:54:00:81:0a:01", ip: "10.81.0.11" }],
    dns: "open",
    upstream: ["203.0.113.53"],
    allowNames: [],
  };
  const account = dnsmasqUser(fixture("dnsmasq/debian-passwd.txt"), fixture("dnsmasq/debian-group.txt"));
  const files = dnsmasqFiles(ctx.tools.runDir, "secure", ctx.tools.stateDir);
  const conf = dnsmasqConf(spec, files, "fixture", account);
  const hosts = dnsmasqHosts(spec);

  it("converged: no diff", () => {
    expect(dnsmasq.plan(spec, { conf, hosts, pid: 4242, account, leases: true }, ctx).diff).toBeUndefined();
  });

  it("a changed lease time: the dhcp-range line old and new, under the config's path; changes carries the lines (never 'differs')", () => {
    const plan = dnsmasq.plan({ ...spec, dhcp: { ...spec.dhcp!, leaseTime: "2h" } }, { conf, hosts, pid: 4242, account, leases: true }, ctx);
    expect(plan.diff!.split("\n").slice(0, 2)).toEqual([`--- live: ${files.conf}`, `+++ desired: ${files.conf}`]);
    expect(edits(plan.diff)).toEqual(["-dhcp-range=10.81.0.100,10.81.0.199,255.255.255.0,1h", "+dhcp-range=10.81.0.100,10.81.0.199,255.255.255.0,2h"]);
    expect(plan.changes.config).toEqual({ old: ["dhcp-range=10.81.0.100,10.81.0.199,255.255.255.0,1h"], new: ["dhcp-range=10.81.0.100,10.81.0.199,255.255.255.0,2h"] });
    expect(plan.changes.running).toEqual({ old: "pid 4242 (old config)", new: "restarted" });
  });

  it("a static host added: the hosts file's diff", () => {
    const more = { ...spec, hosts: [...spec.hosts, { name: "vma2", mac: "52:54:00:81:0a:02", ip: "10.81.0.12" }] };
    const plan = dnsmasq.plan(more, { conf: dnsmasqConf(more, files, "fixture", account), hosts, pid: 4242, account, leases: true }, ctx);
    expect(plan.diff!.split("\n")[0]).toBe(`--- live: ${files.hosts}`);
    expect(edits(plan.diff)).toEqual(["+52:54:00:81:0a:02,10.81.0.12,vma2"]);
  });

  it("the config the lab's agent wrote (captured) against another spec: every '-' line is the host's, every '+' line the plan's", () => {
    const live = fixture("dnsmasq/lab-secure.conf");
    const plan = dnsmasq.plan(spec, { conf: live, hosts, pid: 4242, account, leases: true }, ctx);
    const liveLines = new Set(live.split("\n"));
    const wantLines = new Set(conf.split("\n"));
    for (const l of edits(plan.diff)) expect(l.startsWith("-") ? liveLines.has(l.slice(1)) : wantLines.has(l.slice(1)), l).toBe(true);
    expect(edits(plan.diff).length).toBeGreaterThan(0);
  });
});

describe("libvirt-network: the definition as a unified diff (fixtures: libvirt 9.0 net-dumpxml --inactive)", () => {
  const spec: LibvirtNetworkSpec = {
    kind: "libvirt-network",
    name: "secure",
    bridge: "br-secure",
    portgroups: [
      { name: "default", default: true },
      { name: "isolated", default: false, profileId: "netfleet-isolated" },
    ],
  };
  const xml = fixture("libvirt/secure-active.xml");
  const observed = { exists: true, state: { ...parseNetworkXml(xml), ...parseNetInfo(fixture("libvirt/net-info-active.txt")) }, xml };

  it("libvirt's XML of a network we defined, made canonical, is the XML we define: no quoting noise", () => {
    expect(canonicalXml(xml)).toBe(networkXml(spec, "fixture", observed.state.uuid));
    expect(libvirtNetwork.plan(spec, observed, ctx).diff).toBeUndefined();
  });

  it("another bridge: the one <bridge> line old and new", () => {
    const plan = libvirtNetwork.plan({ ...spec, bridge: "br-secure2" }, observed, ctx);
    expect(plan.diff!.split("\n").slice(0, 2)).toEqual(["--- live: virsh net-dumpxml --inactive secure", "+++ desired: network secure"]);
    expect(edits(plan.diff)).toEqual(['-  <bridge name="br-secure"/>', '+  <bridge name="br-secure2"/>']);
    expect(plan.changes.bridge).toEqual({ old: "br-secure", new: "br-secure2" });
  });

  it("a portgroup taken away: its lines removed", () => {
    const plan = libvirtNetwork.plan({ ...spec, portgroups: spec.portgroups.slice(0, 1) }, observed, ctx);
    expect(edits(plan.diff)).toEqual(['-  <portgroup name="isolated">', '-    <virtualport type="openvswitch">', '-      <parameters profileid="netfleet-isolated"/>', "-    </virtualport>", "-  </portgroup>"]);
  });

  it("no network yet: the whole definition added", () => {
    expect(edits(libvirtNetwork.plan(spec, { exists: false }, ctx).diff)[0]).toBe("+<network>");
  });
});

describe("vm-port-policy: each VM port's rules as a unified diff (OVS 3.1 with-domain.json: vnet port of a libvirt domain)", () => {
  const COOKIE = "0x4e46000000000439";
  const spec: VmPortPolicySpec = {
    kind: "vm-port-policy",
    name: "br-secure",
    network: "secure",
    uplinkPort: "bond0.1081",
    gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" },
    isolatedDefault: false,
    cookie: COOKIE,
    leaseSource: "backend",
    isolatedProfile: "netfleet-isolated",
    vms: [{ name: "dom1", mac: "52:54:00:aa:00:05", ip: "10.81.0.50", isolated: false }],
  };
  const vmPorts = vmPortsOf(parseOvsState(fixture("ovs/with-domain.json")), "br-secure");
  const base: VmPortObservation = { bridgeExists: true, vmPorts, uplinkOfport: 1, flows: [] };
  /** The rules as dump-flows prints them once applied: our cookie. */
  const dumped = (flows: Flow[]) => parseFlows(flows.map((f) => ` cookie=${COOKIE}, ${f.table ? `table=${f.table}, ` : ""}priority=${f.priority}${f.match.length ? "," : ""}${f.match.join(",")} actions=${f.actions}`).join("\n"));
  const want = desiredFlows(spec, base);
  const port = vmPorts[0]!;

  it("converged: no diff", () => {
    expect(vmPortPolicy.plan(spec, { ...base, flows: dumped(want) }, ctx).diff).toBeUndefined();
  });

  it("a rule of the port deleted by hand and one added by someone else: the port's own diff, the other cookie named", () => {
    const own = want.find((f) => f.priority === 210 && f.match.includes("ip"))!;
    const foreign = parseFlows(fixture("ovs/flows-foreign-cookie.txt")).find((f) => f.cookie === "0x1234")!;
    const flows = [...dumped(want.filter((f) => f !== own)), { ...foreign, match: [`in_port=${port.ofport}`] }];
    const plan = vmPortPolicy.plan(spec, { ...base, flows }, ctx);
    expect(plan.diff!.split("\n").slice(0, 2)).toEqual([
      `--- live: br-secure port ${port.port} (ofport ${port.ofport}, ${port.mac})`,
      `+++ desired: br-secure port ${port.port} (ofport ${port.ofport}, ${port.mac})`,
    ]);
    expect(edits(plan.diff)).toEqual([`-cookie=0x1234,priority=500,in_port=${port.ofport} actions=NORMAL`, `+priority=210,ip,in_port=${port.ofport},dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50 actions=goto_table:1`]);
    // the bridge's own rules did not change: no second diff
    expect(plan.diff!.match(/^--- /gm)).toHaveLength(1);
  });

  it("the uplink's rule gone: the bridge's diff, not a port's", () => {
    const flows = dumped(want.filter((f) => !(f.priority === 100 && f.table === undefined)));
    const plan = vmPortPolicy.plan(spec, { ...base, flows }, ctx);
    expect(plan.diff!.split("\n")[0]).toBe("--- live: br-secure (floor, uplink, forwarding)");
    expect(edits(plan.diff)).toEqual(["+priority=100,in_port=1 actions=goto_table:1"]);
  });
});

describe("ovs-ofctl flags before the priority", () => {
  it("a rule added by hand with OpenFlow 1.0 (reset_counts, printed space-separated by OVS 3.1's OpenFlow 1.3 dump) keeps its priority and cookie", () => {
    expect(parseFlows(fixture("ovs/flows-reset-counts.txt"))).toEqual([{ priority: 500, match: ["in_port=2"], actions: "NORMAL", cookie: "0x1234" }]);
  });
});

describe("cutDiff", () => {
  it("cuts at a line and says how many lines were left out", () => {
    const diff = Array.from({ length: 100 }, (_, i) => `+line ${i}`).join("\n") + "\n";
    const cut = cutDiff(diff, 200);
    expect(cut.length).toBeLessThanOrEqual(200);
    expect(cut.split("\n").at(-1)).toMatch(/^\[\.\.\. \d+ more diff lines not shown/);
    expect(Number(/\[\.\.\. (\d+)/.exec(cut)![1]) + cut.split("\n").length - 1).toBe(100);
    expect(cutDiff(diff)).toBe(diff);
  });
});
