import { describe, expect, it } from "vitest";
import type { VmPortPolicySpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { parseOvsState } from "./ovs.ts";
import { desiredFlows, flowKey, parseFlows, vmPortPolicy, vmPortsOf, type Flow } from "./vm-port-policy.ts";

const COOKIE = "0x4e46000000000439";
const spec = (isolated: boolean, ip?: string): VmPortPolicySpec => ({
  kind: "vm-port-policy",
  name: "br-secure",
  network: "secure",
  uplinkPort: "bond0.1081",
  gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" },
  isolatedDefault: false,
  cookie: COOKIE,
  vms: [{ name: "dom1", mac: "52:54:00:aa:00:05", isolated, ...(ip ? { ip } : {}) }],
});
const domainState = parseOvsState(fixture("ovs/with-domain.json"));
const observed = (s: VmPortPolicySpec, flows: Flow[]) => ({ bridgeExists: true, vmPorts: vmPortsOf(domainState, "br-secure"), uplinkOfport: 1, flows });
/** What ovs-ofctl prints back for rules we add: same rules, its own field order. */
const echo = (flows: Flow[]) => parseFlows(flows.map((f) => ` cookie=${COOKIE}, priority=${f.priority},${[...f.match].reverse().join(",")} actions=${f.actions}`).join("\n"));

describe("dump-flows parsing (real OVS 3.1 output)", () => {
  it("reads priority, match and actions, with or without stats", () => {
    const plain = parseFlows(fixture("ovs/flows-br-secure.txt"));
    expect(plain).toEqual([
      { priority: 300, match: ["in_port=2", "dl_src=52:54:00:aa:00:01"], actions: "output:1" },
      { priority: 290, match: ["in_port=2"], actions: "drop" },
      { priority: 0, match: [], actions: "NORMAL" },
    ]);
    expect(parseFlows(fixture("ovs/flows-br-secure-stats.txt"))).toEqual(plain);
  });
});

describe("vm-port-policy", () => {
  it("finds the VM port libvirt plugged (attached-mac on the Interface row)", () => {
    expect(vmPortsOf(domainState, "br-secure")).toEqual([{ port: "vnet0", ofport: 2, mac: "52:54:00:aa:00:05" }]);
  });

  it("anti-spoofing: only the VM's MAC and IP leave its port; everything else drops", () => {
    const flows = desiredFlows(spec(false, "10.81.0.50"), observed(spec(false), []));
    expect(flows.map((f) => `${f.priority} ${f.match.join(",")} ${f.actions}`)).toEqual([
      "200 in_port=2 drop",
      "210 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50 NORMAL",
      "210 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.50 NORMAL",
      "210 udp,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=0.0.0.0,tp_src=68,tp_dst=67 NORMAL",
    ]);
  });

  it("isolated: the VM reaches the gateway only, straight out of the uplink; others cannot reach it", () => {
    const flows = desiredFlows(spec(true, "10.81.0.50"), observed(spec(true), []));
    const text = flows.map((f) => `${f.priority} ${f.match.join(",")} ${f.actions}`);
    expect(text).toContain("220 ip,in_port=2,dl_src=52:54:00:aa:00:05,nw_src=10.81.0.50,dl_dst=02:4e:46:00:04:39 output:1");
    expect(text).toContain("220 arp,in_port=2,dl_src=52:54:00:aa:00:05,arp_sha=52:54:00:aa:00:05,arp_spa=10.81.0.50,dl_dst=ff:ff:ff:ff:ff:ff,arp_tpa=10.81.0.1 output:1");
    expect(text).toContain("220 in_port=1,dl_src=02:4e:46:00:04:39,dl_dst=52:54:00:aa:00:05 output:2");
    expect(text).toContain("215 dl_dst=52:54:00:aa:00:05 drop");
    expect(text.some((t) => t.includes("NORMAL"))).toBe(false);
  });

  it("installs all rules in one atomic bundle, cookie-tagged", () => {
    const plan = vmPortPolicy.plan(spec(false), observed(spec(false), []), ctx);
    expect(plan.commands).toHaveLength(1);
    expect(plan.commands[0]!.argv).toEqual(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", "br-secure", "-"]);
    expect(plan.commands[0]!.stdin!.split("\n")[0]).toBe(`add cookie=${COOKIE},priority=200,in_port=2,actions=drop`);
  });

  it("already converged → no commands (fields compared regardless of the order OVS prints them)", () => {
    const want = desiredFlows(spec(true, "10.81.0.50"), observed(spec(true), []));
    expect(vmPortPolicy.plan(spec(true, "10.81.0.50"), observed(spec(true), echo(want)), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("removes the rules of a port that is gone (VM stopped), strictly and by cookie", () => {
    const stale: Flow = { priority: 200, match: ["in_port=7"], actions: "drop" };
    const want = desiredFlows(spec(false), observed(spec(false), []));
    const plan = vmPortPolicy.plan(spec(false), observed(spec(false), [...echo(want), stale]), ctx);
    expect(plan.commands[0]!.stdin).toBe(`delete_strict cookie=${COOKIE}/-1,priority=200,in_port=7\n`);
    expect(flowKey(stale)).toBe("200|in_port=7");
  });

  it("no bridge yet → nothing to do", () => {
    expect(vmPortPolicy.plan(spec(false), { bridgeExists: false, vmPorts: [], flows: [] }, ctx).commands).toEqual([]);
  });
});

describe("vm-port-policy against rules a real OVS holds", () => {
  it("the isolated VM's rules as OVS 3.1 prints them read back as converged", () => {
    // Captured after applying the isolated policy for a VM on ofport 1 with the uplink on ofport 2.
    const flows = parseFlows(fixture("ovs/flows-isolated-vm.txt"));
    const obs = { bridgeExists: true, vmPorts: [{ port: "a1", ofport: 1, mac: "52:54:00:aa:00:05" }], uplinkOfport: 2, flows };
    expect(vmPortPolicy.plan(spec(true, "10.81.0.50"), obs, ctx)).toEqual({ changes: {}, commands: [] });
  });
});
