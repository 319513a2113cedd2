import { describe, expect, it } from "vitest";
import type { VmPortPolicySpec } from "@netfleet/shared";
import { reconcilePass } from "../engine.ts";
import { RecordingRunner } from "../exec/recording-runner.ts";
import { Toolbox } from "../tools.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { ovsObserveArgv } from "./ovsdb.ts";
import { qosObserveArgv } from "./vm-bandwidth-qos.ts";
import { parseFlows } from "./openflow.ts";
import { desiredMeters, kbitOf, kbpsOf, meteredFlows, parseMeters, planMeters } from "./vm-bandwidth.ts";
import { parseQos, planQos } from "./vm-bandwidth-qos.ts";
import { desiredFlows, vmPortPolicy, type VmPortObservation } from "./vm-port-policy.ts";

// Real output of OVS 3.1 (capture-bandwidth.sh): meters 1 and 3 on br-secure; vnet1 with our QoS
// (ingress 50 Mbit/s, burst 1 Mbit), vnet2 with an operator's QoS, vnet3 none, and an orphan of ours (MAC ..:09).
const meters = (name: string) => parseMeters(fixture(`ovs/bandwidth/${name}`));
const qosMixed = parseQos(fixture("ovs/bandwidth/qos-mixed.json"));
const MAC = (n: number) => `52:54:00:00:00:0${n}`;
const ports = [1, 2, 3].map((n) => ({ port: `vnet${n}`, ofport: n, mac: MAC(n) }));
type SpecVm = VmPortPolicySpec["vms"][number];
const vm = (n: number, bandwidth?: SpecVm["bandwidth"]): SpecVm => ({ name: `dom${n}`, mac: MAC(n), isolated: false, ...(bandwidth ? { bandwidth } : {}) });
const spec = (vms: SpecVm[]): VmPortPolicySpec => ({
  kind: "vm-port-policy",
  name: "br-secure",
  network: "secure",
  uplinkPort: "bond0.1081",
  gateway: { ip: "10.99.0.254", mac: "02:4e:46:00:04:39" },
  isolatedDefault: false,
  cookie: "0x4e46000000000001",
  vms,
});
const LIMIT = { rate: 50_000_000, burst: 40_000_000 };
const argvOf = (c: { argv: string[] }) => c.argv.join(" ");

describe("meters: ovs-ofctl dump-meters (real OVS 3.1 output)", () => {
  it("reads id, kbps rate and kilobit burst of each meter; an empty bridge has none", () => {
    expect(meters("meters-none.txt")).toEqual([]);
    expect(meters("meters-two.txt")).toEqual([
      { id: 1, rateKbps: 50000, burstKbit: 40000 },
      { id: 3, rateKbps: 500, burstKbit: 12 },
    ]);
    expect(meters("meters-modified.txt")[1]).toEqual({ id: 3, rateKbps: 800, burstKbit: 20 });
  });

  it("keeps a meter of another form (pktps) as such: never equal to a wanted one", () => {
    const [m] = parseMeters("OFPST_METER_CONFIG reply (OF1.3) (xid=0x2):\nmeter=4 pktps burst bands=\ntype=drop rate=100 burst_size=10\n");
    expect(m?.other).toContain("pktps");
    const plan = planMeters("br-secure", [{ id: 4, rateKbps: 100, burstKbit: 10 }], [m!], ctx);
    expect(plan.before.map(argvOf)).toEqual(["ovs-ofctl -O OpenFlow13 mod-meter br-secure meter=4,kbps,burst,band=type=drop,rate=100,burst_size=10"]);
  });

  it("converts bit/s and bits to kbps and kilobits (1000-based), at least 1", () => {
    expect([kbpsOf(50_000_000), kbpsOf(1500), kbpsOf(400), kbitOf(1_000_000), kbitOf(12_000)]).toEqual([50000, 2, 1, 1000, 12]);
  });
});

describe("meters: plan", () => {
  it("one meter per limited VM port, id = ofport; unlimited and unknown VMs get none", () => {
    expect(desiredMeters(spec([vm(1, { egress: LIMIT }), vm(2, { ingress: LIMIT }), vm(3)]), ports)).toEqual([{ id: 1, rateKbps: 50000, burstKbit: 40000 }]);
  });

  it("already converged: no command", () => {
    const want = desiredMeters(spec([vm(1, { egress: LIMIT }), vm(3, { egress: { rate: 800_000, burst: 20_000 } })]), ports);
    expect(planMeters("br-secure", want, meters("meters-modified.txt"), ctx)).toEqual({ before: [], after: [], touched: [] });
  });

  it("adds and changes before the rules, deletes after them; nothing when meters cannot be read", () => {
    const want = desiredMeters(spec([vm(2, { egress: LIMIT }), vm(3, { egress: { rate: 900_000, burst: 20_000 } })]), ports);
    const plan = planMeters("br-secure", want, meters("meters-modified.txt"), ctx);
    expect(plan.before.map(argvOf)).toEqual([
      "ovs-ofctl -O OpenFlow13 add-meter br-secure meter=2,kbps,burst,band=type=drop,rate=50000,burst_size=40000",
      "ovs-ofctl -O OpenFlow13 mod-meter br-secure meter=3,kbps,burst,band=type=drop,rate=900,burst_size=20",
    ]);
    expect(plan.after.map(argvOf)).toEqual(["ovs-ofctl -O OpenFlow13 del-meter br-secure meter=1"]);
    expect(plan.touched.sort()).toEqual([1, 3]);
    expect(plan.before.every((c) => c.mutating)).toBe(true);
    expect(planMeters("br-secure", want, undefined, ctx)).toEqual({ before: [], after: [], touched: [] });
  });

  it("a limited port's rules that let frames on start with its meter, as dump-flows prints them back", () => {
    const flows = [
      { priority: 210, match: ["ip", "in_port=1", `dl_src=${MAC(1)}`, "nw_src=10.99.0.1"], actions: "goto_table:1" },
      { priority: 200, match: ["in_port=1"], actions: "drop" },
      { priority: 210, match: ["ip", "in_port=2", `dl_src=${MAC(2)}`, "nw_src=10.99.0.2"], actions: "goto_table:1" },
      { priority: 100, match: ["in_port=9"], actions: "goto_table:1" },
      { table: 1, priority: 100, match: [`dl_dst=${MAC(1)}`], actions: "output:1" },
    ];
    const out = meteredFlows(flows, [{ id: 1, rateKbps: 50000, burstKbit: 40000 }]);
    expect(out.map((f) => f.actions)).toEqual(["meter:1,goto_table:1", "drop", "goto_table:1", "goto_table:1", "output:1"]);
    const [real] = parseFlows(fixture("ovs/bandwidth/flows-metered.txt"));
    expect(real?.actions).toBe(out[0]!.actions);
  });
});

describe("QoS: Port qos, QoS and Queue tables (real OVS 3.1 output)", () => {
  it("reads which port has which QoS, its queue 0 and marks", () => {
    expect(parseQos(fixture("ovs/bandwidth/qos-none.json"))).toEqual({ portQos: {}, qos: [], queues: [] });
    expect(Object.keys(qosMixed.portQos).sort()).toEqual(["vnet1", "vnet2"]);
    const ours = qosMixed.qos.find((q) => q.uuid === qosMixed.portQos.vnet1)!;
    expect(ours).toMatchObject({ type: "linux-htb", otherConfig: { "max-rate": "50000000" }, externalIds: { "netfleet-owner": "fixture", "netfleet-mac": MAC(1) } });
    expect(qosMixed.queues.find((u) => u.uuid === ours.queues["0"])?.otherConfig).toEqual({ "max-rate": "50000000", burst: "1000000" });
    expect(() => parseQos("{}\n")).toThrow(/3 OVSDB tables/);
  });

  it("converged (vnet1 5 Mbit/s: the fixture's root at 50, ten times its queue's rate; burst 1 Mbit) except the orphan of ours, which goes; the operator's QoS is never touched", () => {
    const plan = planQos(spec([vm(1, { ingress: { rate: 5_000_000, burst: 1_000_000 } }), vm(2)]), ports, { ...qosMixed, queues: qosMixed.queues.map((u) => (u.externalIds["netfleet-mac"] === MAC(1) ? { ...u, otherConfig: { ...u.otherConfig, "max-rate": "5000000" } } : u)) }, ctx);
    const orphan = qosMixed.qos.find((q) => q.externalIds["netfleet-mac"] === MAC(9))!;
    expect(plan.commands.map(argvOf)).toEqual([`ovs-vsctl --timeout=30 -- destroy QoS ${orphan.uuid} -- destroy Queue ${orphan.queues["0"]}`]);
    expect(plan.touchedPorts).toEqual([]);
  });

  it("the root (QoS) rate is ten times the queue's: OVS gives the root a one-frame burst, which must never be the limit", () => {
    const plan = planQos(spec([vm(3, { ingress: { rate: 2_000_000, burst: 1_000_000 } })]), [ports[2]!], parseQos(fixture("ovs/bandwidth/qos-none.json")), ctx);
    expect(plan.commands[0]!.argv.join(" ")).toContain("create QoS type=linux-htb other_config:max-rate=20000000 ");
    expect(plan.commands[0]!.argv.join(" ")).toContain("create Queue other_config:max-rate=2000000 other_config:burst=1000000 ");
  });

  it("a limit on a port with the operator's QoS is not applied, and said", () => {
    const plan = planQos(spec([vm(2, { ingress: LIMIT })]), ports.slice(1, 2), { ...qosMixed, qos: qosMixed.qos.filter((q) => !q.externalIds["netfleet-owner"]), queues: [] }, ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.notes[0]).toMatch(/vnet2 has a QoS not set by netfleet/);
  });

  it("changes a limit in place, creates one on a port without, removes one no longer asked", () => {
    const ours = qosMixed.qos.find((q) => q.uuid === qosMixed.portQos.vnet1)!;
    const change = planQos(spec([vm(1, { ingress: { rate: 20_000_000, burst: 1_000_000 } }), vm(3, { ingress: LIMIT })]), [ports[0]!, ports[2]!], qosMixed, ctx);
    const argv = change.commands[0]!.argv.join(" ");
    expect(argv).toContain(`-- set QoS ${ours.uuid} other_config:max-rate=200000000`);
    expect(argv).toContain(`-- set Queue ${ours.queues["0"]} other_config:max-rate=20000000 other_config:burst=1000000`);
    expect(argv).toContain("-- set Port vnet3 qos=@q1 -- --id=@q1 create QoS type=linux-htb other_config:max-rate=500000000 external_ids:netfleet-owner=fixture external_ids:netfleet-bridge=br-secure external_ids:netfleet-mac=52:54:00:00:00:03 queues:0=@u1");
    expect(argv).toContain("-- --id=@u1 create Queue other_config:max-rate=50000000 other_config:burst=40000000");
    expect(change.touchedPorts).toEqual(["vnet1"]);
    const remove = planQos(spec([vm(1)]), [ports[0]!], qosMixed, ctx);
    expect(remove.commands[0]!.argv.join(" ")).toContain(`-- clear Port vnet1 qos -- destroy QoS ${ours.uuid} -- destroy Queue ${ours.queues["0"]}`);
  });
});

describe("vm-port-policy with bandwidth", () => {
  const vmPorts = ports.map(({ port, ofport, mac }) => ({ port, ofport, mac }));
  const base = (more: Partial<VmPortObservation> = {}): VmPortObservation => ({ bridgeExists: true, vmPorts, uplinkOfport: 9, flows: [], meters: [], qos: parseQos(fixture("ovs/bandwidth/qos-none.json")), ...more });

  it("a VM that appears: meter first, then the rule bundle naming it, then its QoS; lifecycle", () => {
    const s = spec([vm(1, { egress: LIMIT, ingress: LIMIT })]);
    // The bridge's baseline is there (a bridge without VMs); vnet1 appears.
    const baseline = desiredFlows(s, base({ vmPorts: [] })).map((f) => ({ ...f, cookie: s.cookie }));
    const plan = vmPortPolicy.plan(s, base({ vmPorts: [vmPorts[0]!], flows: baseline }), ctx);
    const kinds = plan.commands.map((c) => c.argv.slice(3, 5).join(" ") + (c.argv[0] === "ovs-vsctl" ? " vsctl" : ""));
    expect(kinds[0]).toBe("add-meter br-secure");
    expect(plan.commands[1]!.argv).toContain("--bundle");
    expect(plan.commands[1]!.stdin).toContain("actions=meter:1,goto_table:1");
    expect(plan.commands.at(-1)!.argv.join(" ")).toContain("-- set Port vnet1 qos=@q0");
    expect(plan.lifecycle).toBe(true);
    expect(Object.keys(plan.changes)).toEqual(expect.arrayContaining(["flows", "meters", "qos"]));
  });

  it("no meter is named by a rule when the bridge's meters cannot be read; the plan says why", () => {
    const s = spec([vm(1, { egress: LIMIT })]);
    const obs = base({ metersProblem: "OFPT_ERROR: OFPBRC_BAD_TYPE" });
    delete obs.meters;
    expect(desiredFlows(s, obs).some((f) => f.actions.includes("meter:"))).toBe(false);
    expect(vmPortPolicy.plan(s, obs, ctx).comment).toMatch(/egress limits not applied: meters cannot be read/);
  });

  it("converged with limits: no command", () => {
    const s = spec([vm(1, { egress: LIMIT })]);
    const first = base();
    const want = desiredFlows(s, first).map((f) => ({ ...f, cookie: s.cookie }));
    const plan = vmPortPolicy.plan(s, base({ flows: want, meters: [{ id: 1, rateKbps: 50000, burstKbit: 40000 }] }), ctx);
    expect(plan.commands).toEqual([]);
  });

  it("a rate changed for a running VM: mod-meter only (rules unchanged), reported as drift", () => {
    const s = spec([vm(1, { egress: LIMIT })]);
    const want = desiredFlows(s, base()).map((f) => ({ ...f, cookie: s.cookie }));
    const plan = vmPortPolicy.plan(spec([vm(1, { egress: { rate: 20_000_000, burst: 16_000_000 } })]), base({ flows: want, meters: [{ id: 1, rateKbps: 50000, burstKbit: 40000 }] }), ctx);
    expect(plan.commands.map(argvOf)).toEqual(["ovs-ofctl -O OpenFlow13 mod-meter br-secure meter=1,kbps,burst,band=type=drop,rate=20000,burst_size=16000"]);
    expect(plan.lifecycle).toBeUndefined();
  });
});

describe("vm-port-policy with bandwidth: the observed-state hash", () => {
  it("covers its VM ports' QoS and the rows marked with its bridge, not another bridge's", () => {
    const obs: VmPortObservation = { bridgeExists: true, vmPorts: [{ port: "vnet1", ofport: 1, mac: MAC(1) }], flows: [], meters: [], qos: qosMixed };
    const s = spec([]);
    const seen = vmPortPolicy.stable!(obs, s) as { qos: { portQos: Record<string, string>; qos: unknown[]; queues: unknown[] } };
    // vnet1's QoS and the orphan marked br-secure; not vnet2's (not one of its VM ports here)
    expect(Object.keys(seen.qos.portQos)).toEqual(["vnet1"]);
    expect(seen.qos.qos).toHaveLength(2);
    expect(seen.qos.queues).toHaveLength(2);
    const other = vmPortPolicy.stable!(obs, { ...s, name: "br-other" }) as typeof seen;
    expect(other.qos.qos).toHaveLength(1);
  });
});

describe("vm-port-policy with bandwidth: the drift comment", () => {
  it("names bandwidth only when a running port's limits changed, not for a fresh port on a bridge whose baseline was missing", () => {
    const s = spec([vm(1, { egress: LIMIT })]);
    const obs: VmPortObservation = { bridgeExists: true, vmPorts: [{ port: "vnet1", ofport: 1, mac: MAC(1) }], uplinkOfport: 9, flows: [], meters: [], qos: parseQos(fixture("ovs/bandwidth/qos-none.json")) };
    const plan = vmPortPolicy.plan(s, obs, ctx);
    expect(plan.comment).toMatch(/^drift: \d+ rule\(s\) restored$/);
  });
});

describe("meters: dump-meters skipped while this daemon knows the bridge has none (ObserveContext.carry)", () => {
  const tools = new Toolbox();
  const policy = (vms: SpecVm[]): VmPortPolicySpec => ({ ...spec(vms), uplinkPort: "bond0.1081", gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" } });
  /** One check pass over a host whose rules and meters are the given captures (OVS 3.1); the dump-meters it ran, and its result. */
  async function pass(s: VmPortPolicySpec, flows: string, meterText: string, carry?: Map<string, unknown>) {
    const runner = new RecordingRunner()
      .reply(ovsObserveArgv({ owner: "fixture", tools }), { stdout: fixture("ovs/with-domain.json") })
      .reply(tools.ovsOfctl("dump-flows", "br-secure", "--no-stats"), { stdout: fixture(flows) })
      .reply(tools.ovsOfctl("dump-meters", "br-secure"), { stdout: fixture(meterText) })
      .reply(qosObserveArgv({ owner: "fixture", tools }), { stdout: fixture("ovs/bandwidth/qos-none.json") });
    const { results } = await reconcilePass([s], { runner, tools, owner: "fixture", check: true, ...(carry ? { carry } : {}) });
    return { meterReads: runner.calls.filter((c) => c.argv.includes("dump-meters")).length, result: results[0]! };
  }

  it("reads them once, then not while no limit is wanted and no rule names a meter; a rule naming one, or a limit, reads them again", async () => {
    const carry = new Map<string, unknown>();
    const none = policy([]);
    expect((await pass(none, "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-none.txt", carry)).meterReads).toBe(1);
    const second = await pass(none, "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-none.txt", carry);
    expect(second.meterReads).toBe(0);
    // someone's rule names a meter: read, and the unwanted meters are planned away
    const named = await pass(none, "ovs/bandwidth/flows-metered.txt", "ovs/bandwidth/meters-two.txt", carry);
    expect(named.meterReads).toBe(1);
    expect(named.result.commands.filter((c) => c.includes("del-meter"))).toHaveLength(2);
    // (the last read found meters: read again next time, whatever the rules say)
    expect((await pass(none, "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-two.txt", carry)).meterReads).toBe(1);
    expect((await pass(none, "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-none.txt", carry)).meterReads).toBe(1);
    expect((await pass(none, "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-none.txt", carry)).meterReads).toBe(0);
    // a VM here gets an egress limit: always read
    expect((await pass(policy([vm(1, { egress: LIMIT })]), "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-none.txt", carry)).meterReads).toBe(1);
    // a one-off pass (no carry) always reads
    expect((await pass(none, "ovs/flows-br-secure.txt", "ovs/bandwidth/meters-none.txt")).meterReads).toBe(1);
  });
});
