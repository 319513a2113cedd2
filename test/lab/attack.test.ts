/**
 * Attack tier: one lab (prefix nfa, /tmp/nfa-lab) built for this file, the
 * rows of `netfleet lab attack` (crafted frames from VM, DHCP-VM and
 * stranger namespaces, looked for at their targets beside positive
 * controls), then the windows in time that disturb the lab: an Open vSwitch
 * restart, the agent stopped while a VM port appears, the agent started
 * after the VMs. A sender in vma1 keeps sending a spoofed and a legitimate
 * datagram to the gateway every 15 ms through each event; a capture on the
 * backend's gateway interface counts the spoofed ones that got through
 * (goal 0) and times the legitimate stream's return. Needs root and the
 * packages of scripts/setup.sh (python3-scapy, tcpdump).
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadInventory, type Inventory } from "@netfleet/shared";
import { attackProbes, labAttack, labDown, labProcesses, labReplugVm, labRestartOvs, labStartAgent, labStatus, labStopAgent, labUp, measureWindow, namespacesWithPrefix, type AttackRow, type LabOptions, type LabStatus, type Sender, type WindowResult } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const lab: LabOptions = {
  inventoryDir: join(repoRoot, "inventories", "lab"),
  prefix: "nfa",
  runDir: "/tmp/nfa-lab",
  repoRoot: process.env.NETFLEET_LAB_AGENT_ROOT ?? repoRoot,
};
const inventory: Inventory = loadInventory(lab.inventoryDir);
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long the host stays without its agent in the agent windows (ms). */
const AGENT_AWAY_MS = 2000;
/** The legitimate stream must be back this soon after the trigger (ms): a bound, not a target. */
const RESUME_BOUND_MS = 30_000;

describe.skipIf(!isRoot)("attack tier (prefix nfa, /tmp/nfa-lab)", () => {
  let status: LabStatus;
  const timings: Record<string, number> = {};
  const windows: Record<string, WindowResult> = {};
  const started = performance.now();

  beforeAll(async () => {
    await labDown(lab); // leftovers of an interrupted run
    const t = performance.now();
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    timings.up = performance.now() - t;
  }, 300_000);

  afterAll(async () => {
    const t = performance.now();
    await labDown(lab);
    timings.down = performance.now() - t;
    timings.file = performance.now() - started;
    const back = (v: number | undefined) => (v === undefined ? "not back" : v >= 0 ? `back ${Math.round(v)} ms after the trigger` : `back before the trigger`);
    for (const [name, w] of Object.entries(windows)) {
      process.stderr.write(`window ${name}: ${w.leaked} spoofed frames leaked; legitimate stream out ${Math.round(w.outageMs)} ms at most, ${back(w.resumeMs)} (${w.legit} legitimate frames seen, ${w.sent} frames sent)\n`);
    }
    process.stderr.write(`attack tier timings (ms): ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)])))}\n`);
    expect(namespacesWithPrefix(lab.prefix)).toEqual([]);
    expect(labProcesses({ netnsInodes: new Set(), runDir: lab.runDir })).toEqual([]);
  }, 60_000);

  it("lab is up with the attack fixtures: a DHCP VM and a stranger per VM host hold leases, the gateway is known", () => {
    expect(status.problems ?? []).toEqual([]);
    expect(status.vms.filter((v) => v.kind === "stranger").map((v) => [v.name, v.host, v.network])).toEqual([
      ["x-hosta", "hosta", "secure"],
      ["x-hostb", "hostb", "secure"],
    ]);
    for (const v of status.vms.filter((x) => x.kind === "stranger" || x.name === "vmb4")) expect(v.ip, `${v.name} holds a lease`).toMatch(/^10\.81\.0\.1\d\d$/);
    expect(status.gateways?.find((g) => g.network === "secure")).toMatchObject({ ip: "10.81.0.1", interface: "gw-secure", namespace: "nfa-backend" });
  });

  it("lab attack: every row as expected, each beside its positive control", async () => {
    const probes = attackProbes(inventory, status);
    const t = performance.now();
    const rows: AttackRow[] = await labAttack(inventory, status);
    timings.attack = performance.now() - t;
    const failed = rows.filter((r) => !r.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    expect(rows.length).toBeGreaterThanOrEqual(25);
    // every row that must be dropped proves itself with a control seen in the same run
    for (const p of probes.filter((x) => x.expect === "dropped")) expect(p.controls.length, `${p.check} ${p.from} -> ${p.to}`).toBeGreaterThan(0);
    const has = (check: RegExp, from: string, expect_: AttackRow["expect"]) =>
      expect(rows.some((r) => check.test(r.check) && r.from === from && r.expect === expect_ && r.ok), `${check} from ${from}: ${expect_}`).toBe(true);
    has(/^ip spoofing \(static VM\)$/, "vma1", "dropped");
    has(/^ip spoofing \(DHCP VM\)$/, "vmb4", "dropped");
    has(/^ip spoofing \(unknown MAC\)$/, "x-hosta", "dropped");
    has(/^arp claim \(gratuitous\)$/, "vmb4", "dropped");
    has(/^arp claim \(unicast reply\)$/, "vma1", "dropped");
    has(/^mac spoofing$/, "x-hosta", "dropped");
    has(/^rogue dhcp offer/, "vma1", "dropped");
    has(/^ipv6 router advertisement$/, "vma1", "dropped");
    has(/^isolated to isolated \(same host\)$/, "vma4", "dropped");
    has(/^isolated to isolated \(across hosts\)$/, "vma4", "dropped");
    has(/^cluster group member to member \(across hosts\)$/, "vma3", "delivered");
    has(/^cluster group member to non-member/, "vma3", "dropped");
    has(/^unknown unicast flood to isolated$/, "vma1", "dropped");
    has(/^extra address \(owner\)$/, "vma1", "delivered");
    has(/^extra address \(not owner\)$/, "vmb4", "dropped");
    has(/^rarp announcement \(own MAC\)$/, "vma1", "delivered");
    has(/^rarp announcement \(foreign MAC\)$/, "vmb1", "dropped");
  }, 300_000);

  describe("windows: a spoofing sender in vma1 through the event, 0 frames may leak", () => {
    const vm = (name: string) => status.vms.find((v) => v.name === name)!;
    const measure = async (name: string, event: () => Promise<number>) => {
      const a = vm("vma1");
      const gw = status.gateways!.find((g) => g.network === a.network)!;
      const sender: Sender = { name: a.name, namespace: a.namespace, iface: a.interface, mac: a.mac, ip: a.ip! };
      const t = performance.now();
      const w = await measureWindow({
        sender,
        to: { mac: gw.mac, ip: gw.ip },
        spoofIp: vm("vmb1").ip!, // another VM's address: dropped by vma1's rules, switched by a bridge without them
        at: { name: `gw-${gw.network}`, namespace: gw.namespace, iface: gw.interface },
        port: 42000 + Object.keys(windows).length,
        event,
        resumeTimeoutMs: RESUME_BOUND_MS,
      });
      timings[`window ${name}`] = performance.now() - t;
      windows[name] = w;
      expect(w.legitBefore, "the legitimate stream reached the gateway before the event").toBeGreaterThan(0);
      expect(w.leaked, `spoofed frames from vma1 seen at the gateway during ${name}`).toBe(0);
      expect(w.resumeMs, `the legitimate stream came back within ${RESUME_BOUND_MS} ms`).toBeDefined();
      return w;
    };

    it("ovs-vswitchd restart on hosta (agent running): bridges come back fail-closed", async () => {
      await measure("ovs restart", async () => {
        await labRestartOvs(lab, "hosta");
        return Date.now();
      });
    }, 120_000);

    it("agent stopped while a new VM port appears: the port carries nothing until the agent is back", async () => {
      await measure("new port while the agent is stopped", async () => {
        expect(await labStopAgent(lab, "hosta")).toBeDefined();
        const { before, after } = await labReplugVm(lab, "vma1");
        expect(after, "the re-plugged port got an OpenFlow port number of its own").not.toBe(before);
        await sleep(AGENT_AWAY_MS);
        labStartAgent(lab, "hosta");
        return Date.now();
      });
    }, 120_000);

    it("agent started after the VMs (boot order): OVS up with its ports, no agent yet", async () => {
      await measure("agent after the VMs", async () => {
        expect(await labStopAgent(lab, "hosta")).toBeDefined();
        await labRestartOvs(lab, "hosta");
        await sleep(AGENT_AWAY_MS);
        labStartAgent(lab, "hosta");
        return Date.now();
      });
    }, 120_000);

    it("after the windows the lab is whole again", async () => {
      const st = await labStatus(lab);
      expect(st.problems ?? []).toEqual([]);
    }, 60_000);
  });
});
