import { describe, expect, it } from "vitest";
import type { Lease, VmPortPolicySpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { parseOvsState } from "./ovsdb.ts";
import { flowKey, parseFlows, type Flow } from "./openflow.ts";
import { describeFlows, desiredFlows, rarpAnnounce, vmPortPolicy, vmPortsOf, type VmPort, type VmPortObservation } from "./vm-port-policy.ts";

const COOKIE = "0x4e46000000000439";
const GW = { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" };
type SpecVm = VmPortPolicySpec["vms"][number];
const spec = (vms: SpecVm[], extra: Partial<VmPortPolicySpec> = {}): VmPortPolicySpec => ({
  kind: "vm-port-policy",
  name: "br-secure",
  network: "secure",
  uplinkPort: "bond0.1081",
  gateway: GW,
  isolatedDefault: false,
  cookie: COOKIE,
  leaseSource: "backend",
  isolatedProfile: "netfleet-isolated",
  vms,
  ...extra,
});
const dom1 = (over: Partial<SpecVm> = {}): SpecVm => ({ name: "dom1", mac: "52:54:00:aa:00:05", isolated: false, ...over });
const domainState = parseOvsState(fixture("ovs/with-domain.json"));
const obs = (flows: Flow[], more: Partial<VmPortObservation> = {}): VmPortObservation => ({ bridgeExists: true, vmPorts: vmPortsOf(domainState, "br-secure"), uplinkOfport: 1, flows, ...more });
/** What ovs-ofctl prints back for rules we add: same rules, its own field order, our cookie. */
const echo = (flows: Flow[]) =>
  parseFlows(flows.map((f) => ` cookie=${COOKIE}, ${f.table ? `table=${f.table}, ` : ""}priority=${f.priority}${f.match.length ? "," : ""}${[...f.match].reverse().join(",")} actions=${f.actions}`).join("\n"));
const text = (s: VmPortPolicySpec, o: VmPortObservation) => describeFlows(desiredFlows(s, o));
const lease = (mac: string, ip: string): Lease => ({ mac, ip, expires: 0 });

describe("ovs-ofctl output parsing (real OVS 3.1 output)", () => {
  it("reads priority, match, actions and the cookie, with or without stats", () => {
    const plain = parseFlows(fixture("ovs/flows-br-secure.txt"));
    expect(plain).toEqual([
      { priority: 300, match: ["in_port=2", "dl_src=52:54:00:aa:00:01"], actions: "output:1", cookie: "0x4e46000000000001" },
      { priority: 290, match: ["in_port=2"], actions: "drop", cookie: "0x4e46000000000001" },
      { priority: 0, match: [], actions: "NORMAL", cookie: "0x4e46000000000001" },
    ]);
    expect(parseFlows(fixture("ovs/flows-br-secure-stats.txt"))).toEqual(plain);
    const foreign = parseFlows(fixture("ovs/flows-foreign-cookie.txt"));
    expect(foreign.find((f) => f.priority === 500)).toEqual({ priority: 500, match: ["in_port=3"], actions: "NORMAL", cookie: "0x1234" });
    expect(foreign.find((f) => f.priority === 200)?.cookie).toBe(COOKIE);
  });

  it("reads the table of a rule (table 0 is not printed)", () => {
    expect(parseFlows(" cookie=0x4e46000000000439, table=1, priority=50,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=output:1,output:3\n")).toEqual([
      { table: 1, priority: 50, match: ["dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"], actions: "output:1,output:3", cookie: COOKIE },
    ]);
  });
});

describe("vm-port-policy: absent (netfleet plan)", () => {
  it("no bridge yet: the first apply has no rules to write (its bridge is made in the same pass, its VMs come later)", () => {
    const s = spec([dom1()]);
    expect(vmPortPolicy.plan(s, vmPortPolicy.absent(s), ctx)).toEqual({ changes: {}, commands: [] });
  });
});

describe("vm-port-policy: every port uses only its own addresses", () => {
  it("finds the VM port libvirt plugged (attached-mac on the Interface row)", () => {
    expect(vmPortsOf(domainState, "br-secure")).toEqual([{ port: "vnet0", ofport: 2, mac: "52:54:00:aa:00:05" }]);
  });

  it("a static VM: its MAC with its IP and ARP; DHCP client to the gateway only; server replies and IPv6 dropped; the bridge fails closed", () => {
    expect(text(spec([dom1({ ip: "10.81.0.50" })]), obs([]))).toEqual([
      "0  drop",
      "100 in_port=1 goto_table:1",
      "1:0  output:1",
      "1:50 dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 output:1,output:2",
      "1:100 dl_dst=52:54:00:aa:00:05 output:2",
      "300 udp,in_port=2,tp_src=67 drop",
      "300 ipv6,in_port=2 drop",
      "290 udp,in_port=2,dl_src=52:54:00:aa:00:05,dl_dst=ff:ff:ff:ff:ff:ff,tp_src=68,tp_dst=67 output:1",
      "290 udp,in_port=2,dl_src=52:54:00:aa:00:05,dl_dst=02:4e:46:00:04:39,tp_src=68,tp_dst=67 output:1",
      "200 in_port=2 drop",
      "210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50 goto_table:1",
      "210 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.50 goto_table:1",
      "210 rarp,in_port=2,dl_src=52:54:00:aa:00:05 goto_table:1",
    ]);
  });

  it("a DHCP VM may only do DHCP until its lease is known, then only that lease", () => {
    const before = text(spec([dom1()]), obs([]));
    expect(before.filter((f) => f.startsWith("210 ip") || f.startsWith("210 arp"))).toEqual([]);
    expect(before).toContain("290 udp,in_port=2,dl_src=52:54:00:aa:00:05,dl_dst=ff:ff:ff:ff:ff:ff,tp_src=68,tp_dst=67 output:1");
    const after = text(spec([dom1()]), obs([], { leases: [lease("52:54:00:aa:00:05", "10.81.0.150"), lease("52:54:00:aa:00:99", "10.81.0.151")] }));
    expect(after.filter((f) => f.startsWith("210 ip") || f.startsWith("210 arp"))).toEqual([
      "210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.150 goto_table:1",
      "210 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.150 goto_table:1",
    ]);
  });

  it("a NIC whose MAC the inventory does not know is a DHCP VM of the network", () => {
    const stranger = text(spec([{ name: "other", mac: "52:54:00:bb:00:01", ip: "10.81.0.60", isolated: false }]), obs([], { leases: [lease("52:54:00:aa:00:05", "10.81.0.170")] }));
    expect(stranger).toContain("210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.170 goto_table:1");
    expect(stranger.some((f) => f.includes("10.81.0.60"))).toBe(false);
  });

  it("a static VM whose ip changed keeps its leased old address until the lease ends (and may renew from it)", () => {
    const flows = text(spec([dom1({ ip: "10.81.0.51" })]), obs([], { leases: [lease("52:54:00:aa:00:05", "10.81.0.50")] }));
    expect(flows).toContain("210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50 goto_table:1");
    expect(flows).toContain("210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.51 goto_table:1");
  });

  it("never the gateway's address, even if a lease said so", () => {
    const flows = text(spec([dom1()]), obs([], { leases: [lease("52:54:00:aa:00:05", GW.ip)] }));
    expect(flows.some((f) => f.includes(`nw_src=${GW.ip}`) || f.includes(`arp_spa=${GW.ip}`))).toBe(false);
  });

  it("extra addresses (a virtual IP) with their ARP", () => {
    const flows = text(spec([dom1({ ip: "10.81.0.50", extraAddresses: ["10.81.0.40"] })]), obs([]));
    expect(flows).toContain("210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.40 goto_table:1");
    expect(flows).toContain("210 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.40 goto_table:1");
  });
});

describe("vm-port-policy: isolation and cluster groups", () => {
  it("isolated: the gateway only, straight out of the uplink; others cannot reach it; gateway broadcasts copied to it", () => {
    const flows = text(spec([dom1({ ip: "10.81.0.50", isolated: true })]), obs([]));
    expect(flows).toContain("220 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50,dl_dst=02:4e:46:00:04:39 output:1");
    expect(flows).toContain("220 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.50,dl_dst=ff:ff:ff:ff:ff:ff output:1");
    expect(flows).toContain("220 in_port=1,dl_src=02:4e:46:00:04:39,dl_dst=52:54:00:aa:00:05 output:2");
    expect(flows).toContain("215 dl_dst=52:54:00:aa:00:05 drop");
    expect(flows).toContain("230 in_port=1,dl_src=02:4e:46:00:04:39,dl_dst=ff:ff:ff:ff:ff:ff output:2,goto_table:1");
    // no forwarding entry: nothing reaches it through table 1 (broadcasts, unknown unicast, its MAC)
    expect(flows.filter((f) => f.startsWith("1:") && f.includes("output:2"))).toEqual([]);
    expect(flows.filter((f) => f.includes("in_port=2") && f.includes("goto_table"))).toEqual([]);
  });

  it("the libvirt portgroup `isolated` isolates a VM the inventory does not name", () => {
    const state = obs([], { vmPorts: [{ port: "vnet0", ofport: 2, mac: "52:54:00:cc:00:01", profile: "netfleet-isolated" }] });
    expect(text(spec([]), state)).toContain("215 dl_dst=52:54:00:cc:00:01 drop");
  });

  it("a port the agent has not vetted (no attached-mac, or not seen yet) is no destination: no broadcast, flood or unicast reaches it", () => {
    const vetted: VmPort[] = [{ port: "vnet0", ofport: 2, mac: "52:54:00:aa:00:05" }];
    const flows = text(spec([dom1({ ip: "10.81.0.50" })]), obs([], { vmPorts: vetted }));
    // ofport 3 (a new tap, not yet vetted) appears in no rule; table 1's last resort is the uplink
    expect(flows.filter((f) => /output:3\b|in_port=3\b/.test(f))).toEqual([]);
    expect(flows).toContain("1:0  output:1");
    expect(flows.filter((f) => f.includes("NORMAL"))).toEqual([]);
  });

  it("a cluster group: members reach each other by MAC, here or through the uplink; non-members do not", () => {
    const ports: VmPort[] = [
      { port: "vnet0", ofport: 2, mac: "52:54:00:aa:00:05" },
      { port: "vnet1", ofport: 3, mac: "52:54:00:aa:00:06" },
    ];
    const s = spec([
      dom1({ ip: "10.81.0.50", isolated: true, groups: ["slurm"] }),
      { name: "dom2", mac: "52:54:00:aa:00:06", ip: "10.81.0.51", isolated: true, groups: ["slurm"] },
      { name: "dom3", mac: "52:54:00:aa:00:07", ip: "10.81.0.52", isolated: true, groups: ["slurm"] },
      { name: "dom4", mac: "52:54:00:aa:00:08", ip: "10.81.0.53", isolated: true },
    ]);
    const flows = text(s, obs([], { vmPorts: ports }));
    expect(flows).toContain("220 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50,dl_dst=52:54:00:aa:00:06 output:3"); // local member
    expect(flows).toContain("220 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50,dl_dst=52:54:00:aa:00:07 output:1"); // remote member
    expect(flows).toContain("220 in_port=1,dl_src=52:54:00:aa:00:07,dl_dst=52:54:00:aa:00:05 output:2");
    expect(flows).toContain("220 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.50,dl_dst=ff:ff:ff:ff:ff:ff output:1,output:3");
    expect(flows.some((f) => f.includes("dl_dst=52:54:00:aa:00:08") && !f.includes("drop"))).toBe(false);
    // a remote member's broadcast reaches the local members only; a remote non-member's is dropped
    expect(flows).toContain("225 in_port=1,dl_src=52:54:00:aa:00:07,dl_dst=ff:ff:ff:ff:ff:ff output:2,output:3");
    expect(flows).toContain("225 in_port=1,dl_src=52:54:00:aa:00:08,dl_dst=ff:ff:ff:ff:ff:ff drop");
  });
});

describe("vm-port-policy: the bridge's whole table, drift and lifecycle", () => {
  const s = spec([dom1({ ip: "10.81.0.50", isolated: true })]);
  const want = () => desiredFlows(s, obs([]));

  it("installs all rules in one atomic bundle, cookie-tagged", () => {
    const plan = vmPortPolicy.plan(spec([dom1()]), obs([], {}), ctx);
    const bundle = plan.commands.find((c) => c.argv.includes("--bundle"))!;
    expect(bundle.argv).toEqual(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", "br-secure", "-"]);
    expect(bundle.stdin!.split("\n")[0]).toBe(`add cookie=${COOKIE},priority=0,actions=drop`);
  });

  it("already converged → no commands (fields compared regardless of the order OVS prints them)", () => {
    expect(vmPortPolicy.plan(s, obs(echo(want())), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("removes a rule someone else installed (any cookie) and reports it as drift", () => {
    const intruder: Flow = { priority: 500, match: ["in_port=2"], actions: "NORMAL", cookie: "0x1234" };
    const plan = vmPortPolicy.plan(s, obs([...echo(want()), intruder]), ctx);
    expect(plan.commands.at(-1)!.stdin).toBe("delete_strict priority=500,in_port=2\n");
    expect(plan.changes.foreign).toEqual({ old: ["priority=500,in_port=2 actions=NORMAL (cookie 0x1234)"], new: null });
    expect(plan.lifecycle).toBeUndefined();
    expect(plan.comment).toBe("drift: 1 rule(s) not installed by netfleet: priority=500,in_port=2 actions=NORMAL (cookie 0x1234)");
  });

  it("a rule of ours replaced under the same match by another cookie is put back", () => {
    const swapped = echo(want()).map((f) => (f.priority === 215 ? { ...f, actions: "NORMAL", cookie: "0x99" } : f));
    const plan = vmPortPolicy.plan(s, obs(swapped), ctx);
    expect(plan.commands.at(-1)!.stdin).toBe(`add cookie=${COOKIE},priority=215,dl_dst=52:54:00:aa:00:05,actions=drop\n`);
    expect(plan.lifecycle).toBeUndefined();
  });

  it("a deleted uplink rule is restored as drift", () => {
    const plan = vmPortPolicy.plan(s, obs(echo(want()).filter((f) => f.priority !== 100)), ctx);
    expect(plan.commands.at(-1)!.stdin).toBe(`add cookie=${COOKIE},priority=100,in_port=1,actions=goto_table:1\n`);
    expect(plan.lifecycle).toBeUndefined();
  });

  it("a VM port that appeared, or the rules of one that went, is lifecycle", () => {
    const baseline = echo(desiredFlows(s, obs([], { vmPorts: [] }))); // the bridge's rules before the port was there
    expect(vmPortPolicy.plan(s, obs(baseline), ctx).lifecycle).toBe(true);
    const stale: Flow = { priority: 200, match: ["in_port=7"], actions: "drop", cookie: COOKIE };
    const plan = vmPortPolicy.plan(s, obs([...echo(want()), stale]), ctx);
    expect(plan.commands.at(-1)!.stdin).toBe("delete_strict priority=200,in_port=7\n");
    expect(plan.lifecycle).toBe(true);
    expect(flowKey(stale)).toBe("0|200|in_port=7");
  });

  it("a port that just got its rules is announced out of the uplink, after them, with QEMU's RARP frame", () => {
    const plan = vmPortPolicy.plan(s, obs([]), ctx);
    const last = plan.commands.at(-1)!;
    expect(plan.commands.at(-2)!.argv).toContain("--bundle");
    expect(last.argv.slice(0, 5)).toEqual(["ovs-ofctl", "-O", "OpenFlow13", "packet-out", "br-secure"]);
    const packet = /packet=([0-9a-f]+) actions=output:1$/.exec(last.argv[5]!)![1]!;
    expect(packet.length).toBe(120); // 60 bytes, the Ethernet minimum
    expect(packet.slice(0, 24)).toBe("ffffffffffff525400aa0005"); // broadcast, from the VM's MAC
    expect(packet.slice(24, 28)).toBe("8035");
    expect(packet.slice(28, 44)).toBe("0001080006040003"); // Ethernet/IPv4, opcode 3 (reverse request)
    expect(rarpAnnounce("52:54:00:AA:00:05")).toBe(packet);
    // converged: no announcement again
    expect(vmPortPolicy.plan(s, obs(echo(want())), ctx).commands).toEqual([]);
  });

  it("a lease that came is lifecycle", () => {
    const dhcp = spec([dom1()]);
    const before = echo(desiredFlows(dhcp, obs([])));
    const plan = vmPortPolicy.plan(dhcp, obs(before, { leases: [lease("52:54:00:aa:00:05", "10.81.0.150")] }), ctx);
    expect(plan.commands).toHaveLength(1);
    expect(plan.lifecycle).toBe(true);
  });

  it("no bridge yet → nothing to do", () => {
    expect(vmPortPolicy.plan(s, { bridgeExists: false, vmPorts: [], flows: [] }, ctx).commands).toEqual([]);
  });
});
