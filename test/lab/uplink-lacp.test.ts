/**
 * LACP uplinks in the lab: one lab (prefix nflacp, /tmp/nflacp-lab) of the
 * site test/lab/sites/lacp, a backend and a VM host whose ovs-trunk uplinks
 * are two-member balance-tcp bonds (hostl says `lacp: active`, the backend
 * leaves it to the default). The lab switch faces each host with a LAG (an
 * OVS bond of its two ports, LACP active). Proven at the target, the
 * backend's gateway port: both aggregates negotiate; a VM's ping, DNS (UDP)
 * and TCP cross both; the member carrying the VM's flow fails (its link down
 * at the switch's end, then at the host's) and the traffic stays, that member
 * disabled on both ends; restored, both enabled again. `lab status` lists the
 * LAGs. The negative control, by hand on the same lab: the VM host's bond
 * with LACP off carries not a frame either way (counted at the gateway and at
 * the VM), whether the switch insists on LACP or has plain trunk ports; the
 * agent, started again, repairs lacp=active and the traffic returns.
 * Needs root and the packages of scripts/setup.sh (tcpdump, dig).
 */
import { execa } from "execa";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read } from "@netfleet/agent";
import { loadInventory } from "@netfleet/shared";
import { appctl, labDown, LABNET, labProcesses, labStartAgent, labStatus, labStopAgent, labUp, namespacesWithPrefix, parseBondShow, parseLacpShow, readLabState, switchArgs, switchLagPort, type BondShow, type LabOptions, type LabStatus, type Topology } from "@netfleet/lab";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const lab: LabOptions = {
  inventoryDir: join(repoRoot, "test", "lab", "sites", "lacp"),
  prefix: "nflacp",
  runDir: "/tmp/nflacp-lab",
  repoRoot: process.env.NETFLEET_LAB_AGENT_ROOT ?? repoRoot,
  control: "file",
};
const inventory = loadInventory(lab.inventoryDir);
const runner = new ExecaRunner({ timeoutMs: 30_000 });
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function vsctlArgv(db: string, ...args: string[]): string[] {
  return ["ovs-vsctl", `--db=unix:${db}`, "--timeout=10", ...args];
}

async function sh(argv: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
}

async function must(argv: string[]): Promise<string> {
  const r = await sh(argv);
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Polls until `check` holds; every wait in this file is bounded. Returns the ms it took (a figure, never asserted). */
async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
  return performance.now() - t0;
}

/** `ping` from a namespace: how many of `count` echo requests were answered. */
async function pings(ns: string, to: string, count: number, intervalS = "0.2"): Promise<{ sent: number; received: number }> {
  const r = await sh(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", String(count), "-i", intervalS, "-W", "1", to]);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  if (!m) throw new Error(`ping printed no summary: ${r.stdout}${r.stderr}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

/**
 * Runs `during` while tcpdump listens on `iface` in `ns` (inbound only) and
 * returns how many frames matched `filter`. The capture is started and
 * confirmed listening (bounded) before `during`, stopped by its pid after.
 */
async function framesAt(ns: string, iface: string, filter: string, during: () => Promise<void>): Promise<number> {
  const cap = execa("ip", ["netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-l", "-U", "-Q", "in", filter], { reject: false, all: false });
  let err = "";
  let out = "";
  cap.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  cap.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  try {
    await eventually(`tcpdump on ${ns} ${iface} listening`, 10_000, async () => {
      if (cap.exitCode !== null) throw new Error(`tcpdump exited: ${err}`);
      return err.includes("listening on");
    });
    await during();
    await sleep(300); // frames still in flight reach the capture
  } finally {
    cap.kill("SIGTERM");
    await cap;
  }
  return out.split("\n").filter((l) => l.trim()).length;
}

describe.skipIf(!isRoot)("LACP uplinks (prefix nflacp, /tmp/nflacp-lab)", () => {
  let status: LabStatus;
  let t: Topology;
  const figures: Record<string, number | string> = {};
  const topoHost = (name: string) => t.hosts.find((h) => h.name === name)!;
  const bondName = (name: string) => inventory.hosts.find((h) => h.name === name)!.uplink.bond;
  /** bond/show of the host's uplink bond and of the switch's LAG towards it. */
  const ends = async (name: string): Promise<{ host: BondShow; sw: BondShow }> => {
    const h = topoHost(name);
    const host = parseBondShow(await must(appctl(h.ovs.vsCtl, "bond/show", bondName(name))));
    const sw = parseBondShow(await must(appctl(t.switchOvs.vsCtl, "bond/show", switchLagPort(h)!)));
    return { host, sw };
  };
  const allUp = (b: BondShow) => b.lacpStatus === "negotiated" && b.members.length === 2 && b.members.every((m) => m.enabled);
  const negotiated = async (name: string) => {
    const e = await ends(name);
    return allUp(e.host) && allUp(e.sw);
  };
  const vm = () => status.vms.find((v) => v.name === "vml1")!;
  const gw = () => status.gateways!.find((g) => g.network === "lan")!;
  /** ICMP echo requests from vml1 that reach the gateway port on the backend, while `count` pings are sent. */
  const pingsAtGateway = async (count: number) => {
    let got = { sent: 0, received: 0 };
    const frames = await framesAt(gw().namespace, gw().interface, `icmp[icmptype] == icmp-echo and src host ${vm().ip}`, async () => {
      got = await pings(vm().namespace, gw().ip, count);
    });
    return { ...got, frames };
  };

  /**
   * Frames either way while vml1 pings its gateway `count` times and the
   * gateway pings vml1 `count` times: any frame from vml1's MAC at the
   * gateway port, any frame from the gateway's MAC at vml1 (ARP or ICMP
   * alike, so a neighbour entry gone stale changes nothing). Answers counted
   * by each ping.
   */
  const bothWays = async (count: number) => {
    let toVm = -1;
    let vmToGw = { sent: 0, received: 0 };
    let gwToVm = { sent: 0, received: 0 };
    const toGw = await framesAt(gw().namespace, gw().interface, `ether src ${vm().mac}`, async () => {
      toVm = await framesAt(vm().namespace, "eth0", `ether src ${gw().mac}`, async () => {
        [vmToGw, gwToVm] = await Promise.all([pings(vm().namespace, gw().ip, count), pings(gw().namespace, vm().ip!, count)]);
      });
    });
    return { answered: [vmToGw.received, gwToVm.received], atGateway: toGw > 0 ? "some" : "none", atVm: toVm > 0 ? "some" : "none" };
  };

  beforeAll(async () => {
    await labDown(lab); // leftovers of an interrupted run
    const t0 = performance.now();
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    figures.upMs = Math.round(performance.now() - t0);
    t = readLabState(lab.runDir)!.topology;
  }, 300_000);

  afterAll(async () => {
    await labDown(lab);
    process.stderr.write(`uplink-lacp figures: ${JSON.stringify(figures)}\n`);
    expect(namespacesWithPrefix(lab.prefix)).toEqual([]);
    expect(labProcesses({ netnsInodes: new Set(), runDir: lab.runDir })).toEqual([]);
  }, 60_000);

  it("the lab is up; the switch faces each host with a LAG running LACP, the host bonds run balance-tcp with lacp=active", async () => {
    expect(status.problems ?? []).toEqual([]);
    expect(vm().ip).toBe("10.91.0.11");
    // lab status reads the switch's LAGs: up means negotiated with every member enabled
    expect(status.lags).toEqual([
      { host: "backend", port: "h0-lag", lacpStatus: "negotiated", members: [{ name: "h0-e0", enabled: true }, { name: "h0-e1", enabled: true }] },
      { host: "hostl", port: "h1-lag", lacpStatus: "negotiated", members: [{ name: "h1-e0", enabled: true }, { name: "h1-e1", enabled: true }] },
    ]);
    for (const name of ["backend", "hostl"]) {
      const h = topoHost(name);
      expect(h.switchLag, name).toEqual({ port: `h${h.index}-lag`, lacp: "active", bondMode: "balance-tcp", lacpTime: "fast" });
      const port = (column: string, db: string, p: string) => must(vsctlArgv(db, "get", "Port", p, column));
      // what the agent set (backend: from the default of balance-tcp; hostl: from `lacp: active`)
      expect((await port("lacp", h.ovs.db, bondName(name))).trim(), name).toBe("active");
      expect((await port("bond_mode", h.ovs.db, bondName(name))).trim(), name).toBe("balance-tcp");
      expect((await port("lacp", t.switchOvs.db, h.switchLag!.port)).trim(), `switch ${name}`).toBe("active");
    }
  });

  it("both aggregates negotiate: every member enabled and current on both ends, each end's partner is the other", async () => {
    for (const name of ["backend", "hostl"]) {
      figures[`${name}: polling until negotiated, once the lab was up (ms)`] = Math.round(await eventually(`${name}'s LAG negotiated`, 30_000, () => negotiated(name)));
      const h = topoHost(name);
      const host = parseLacpShow(await must(appctl(h.ovs.vsCtl, "lacp/show", bondName(name))));
      const sw = parseLacpShow(await must(appctl(t.switchOvs.vsCtl, "lacp/show", switchLagPort(h)!)));
      for (const side of [host, sw]) {
        expect(side.status, name).toEqual(["active", "negotiated"]);
        expect(side.members.map((m) => m.status.includes("current") && m.actorState.includes("distributing") && m.partnerState.includes("synchronized")), name).toEqual([true, true]);
      }
      const swSysId = /^\s*sys_id: (\S+)$/m.exec(await must(appctl(t.switchOvs.vsCtl, "lacp/show", switchLagPort(h)!)))?.[1];
      expect(host.members.map((m) => m.partnerSysId), `${name}'s partner is the lab switch`).toEqual([swSysId, swSysId]);
    }
  });

  it("carries the VM's traffic across both LAGs: ping and DNS (UDP) to its gateway, TCP to the internet", async () => {
    const p = await pingsAtGateway(10);
    expect(p).toEqual({ sent: 10, received: 10, frames: 10 });
    const dns = await sh(["ip", "netns", "exec", vm().namespace, "dig", "+short", "+time=2", "+tries=2", `@${gw().ip}`, "www.inet.test", "A"]);
    expect(dns.stdout.trim(), dns.stderr).toBe("198.51.100.10");
    const tcp = await sh(["ip", "netns", "exec", vm().namespace, process.execPath, LABNET, "connect", "198.51.100.10", "80", "5000"]);
    expect(tcp.stdout.trim(), tcp.stderr).toBe("inet 203.0.113.1");
  });

  /**
   * Fails the member of hostl's bond that carries vml1's flow towards the
   * gateway (found from the switch ports' rx counters), taking its link down
   * on `side` (the switch's end or the host's) under a 10 ms ping stream;
   * checks both ends, the traffic on the other member, then brings it back.
   */
  const failover = async (side: "switch" | "host") => {
    const h = topoHost("hostl");
    const rx = async () => {
      const links = JSON.parse(await must(["ip", "-n", t.switchNs, "-s", "-json", "link", "show"])) as { ifname: string; stats64: { rx: { packets: number } } }[];
      return h.trunkLinks.map((l) => links.find((x) => x.ifname === l.switchIf)!.stats64.rx.packets);
    };
    const before = await rx();
    expect(await pings(vm().namespace, gw().ip, 20, "0.02")).toEqual({ sent: 20, received: 20 });
    const after = await rx();
    const carried = h.trunkLinks.map((_, i) => after[i]! - before[i]!);
    const i = carried[0]! >= carried[1]! ? 0 : 1;
    const link = h.trunkLinks[i]!;
    figures[`${side} side: flow on`] = `${link.hostIf} (frames on the switch ports during 20 pings: ${carried.join(" / ")})`;
    const setLink = (state: "up" | "down") =>
      must(side === "switch" ? ["ip", "-n", t.switchNs, "link", "set", "dev", link.switchIf, state] : ["ip", "-n", h.namespace, "link", "set", "dev", link.hostIf, state]);

    // a 10 ms ping stream through the failure: the link goes down after 1 s of it
    const stream = pings(vm().namespace, gw().ip, 400, "0.01");
    await sleep(1000);
    await setLink("down");
    const during = await stream;
    figures[`${side} side: pings lost at the failure (10 ms apart, of 400)`] = during.sent - during.received;
    expect(during.received, "the stream went on after the failure").toBeGreaterThan(during.sent / 2);

    const e = await ends("hostl");
    for (const end of [e.host, e.sw]) {
      expect(end.lacpStatus).toBe("negotiated");
      expect(end.members.map((m) => m.enabled)).toEqual(i === 0 ? [false, true] : [true, false]);
    }
    expect(e.host.members[i]!.name).toBe(link.hostIf);
    expect(await pingsAtGateway(10), "carried by the other member").toEqual({ sent: 10, received: 10, frames: 10 });
    const tcp = await sh(["ip", "netns", "exec", vm().namespace, process.execPath, LABNET, "connect", "198.51.100.10", "80", "5000"]);
    expect(tcp.stdout.trim(), tcp.stderr).toBe("inet 203.0.113.1");

    await setLink("up");
    figures[`${side} side: both members back (ms after the link came up)`] = Math.round(await eventually("both members enabled again on both ends", 30_000, () => negotiated("hostl")));
    expect(await pingsAtGateway(10)).toEqual({ sent: 10, received: 10, frames: 10 });
  };

  it("a member fails at the switch: the traffic stays on the other, that member disabled on both ends; restored, both enabled again", () => failover("switch"));

  it("a member fails at the host: the same", () => failover("host"));

  it("negative control: LACP off on the host's balance-tcp bond while the switch insists carries nothing; the agent restores lacp=active", async () => {
    const h = topoHost("hostl");
    const bond = bondName("hostl");
    // by hand, the agent stopped (it would repair the change)
    expect(await labStopAgent(lab, "hostl")).toBeGreaterThan(0);
    try {
      await must(vsctlArgv(h.ovs.db, "set", "Port", bond, "lacp=off"));
      await eventually("the switch LAG towards hostl without a partner", 30_000, async () => {
        const e = await ends("hostl");
        return e.host.lacpStatus === "off" && e.sw.lacpStatus === "configured" && e.sw.members.every((m) => !m.enabled);
      });
      const lacp = parseLacpShow(await must(appctl(t.switchOvs.vsCtl, "lacp/show", switchLagPort(h)!)));
      expect(lacp.members.map((m) => m.partnerSysId)).toEqual(["00:00:00:00:00:00", "00:00:00:00:00:00"]);
      expect((await labStatus(lab)).problems, "lab status says so").toContain("LAG h1-lag towards hostl: lacp_status configured, 0 of 2 members enabled");
      // the host's members stay enabled: OVS says nothing is wrong there, yet nothing passes
      expect((await ends("hostl")).host.members.map((m) => m.enabled)).toEqual([true, true]);
      expect(await pingsAtGateway(10), "nothing reaches the gateway").toEqual({ sent: 10, received: 0, frames: 0 });
      expect(await bothWays(10), "not a frame either way").toEqual({ answered: [0, 0], atGateway: "none", atVm: "none" });
      // the other LAG, the backend's, is untouched by it
      expect(await negotiated("backend")).toBe(true);

      // Even a switch that does not insist cannot help: with plain trunk ports towards the host (by hand), a
      // balance-tcp bond without LACP still passes nothing, either way (what an uplink without lacp got before).
      const trunks = `trunks=${t.trunks.join(",")}`;
      const plain = h.trunkLinks.flatMap((l) => ["--", "add-port", t.switchBridge, l.switchIf, "--", "set", "Port", l.switchIf, trunks]);
      await must(vsctlArgv(t.switchOvs.db, "del-port", t.switchBridge, h.switchLag!.port, ...plain));
      const open = await bothWays(10);
      expect(open, "plain switch ports: still not a frame either way").toEqual({ answered: [0, 0], atGateway: "none", atVm: "none" });
      const hostSide = parseBondShow(await must(appctl(h.ovs.vsCtl, "bond/show", bond)));
      expect([hostSide.lacpStatus, ...hostSide.members.map((m) => m.enabled)], "OVS shows nothing wrong on the host").toEqual(["off", true, true]);
      // the switch's LAG again, as the lab builds it
      await must(vsctlArgv(t.switchOvs.db, ...h.trunkLinks.flatMap((l) => ["--", "del-port", t.switchBridge, l.switchIf]), "--", ...switchArgs(t)));
    } finally {
      labStartAgent(lab, "hostl");
    }
    // the agent finds lacp=off on a bond it wants active and sets it again
    await eventually("the agent set lacp=active again", 60_000, async () => (await sh(vsctlArgv(h.ovs.db, "get", "Port", bond, "lacp"))).stdout.trim() === "active");
    figures["negotiated after the agent's repair (ms)"] = Math.round(await eventually("hostl's LAG negotiated again", 30_000, () => negotiated("hostl")));
    expect(await pingsAtGateway(10), "the positive control: the same pings, LACP on").toEqual({ sent: 10, received: 10, frames: 10 });
    expect(await bothWays(10), "the positive control: both ways, LACP on").toEqual({ answered: [10, 10], atGateway: "some", atVm: "some" });
  });
});
