import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { loadInventory, sealAssignment } from "@netfleet/shared";
import { SITE, TOKEN, eventually, inventoryHost, startAgent, startSimAgent, startSite, writeControllerHome, type Site, type SimAgent, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
let site: Site | undefined;
const sims: SimAgent[] = [];
const agents: TestAgent[] = [];
const children: ReturnType<typeof spawn>[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGKILL");
      await new Promise((r) => c.once("exit", r));
    }
  }
  for (const a of sims.splice(0)) await a.agent.stop();
  for (const a of agents.splice(0)) await a.client.stop();
  await site?.close();
  site = undefined;
});

function sysctlTarget(host: string, gen: number): RolloutTarget {
  const role = host === "backend" ? "backend" : "vmhost";
  return {
    host,
    role,
    assignment: sealAssignment({
      apiVersion: "netfleet.dev/v1",
      kind: "HostAssignment",
      site: SITE,
      host,
      role,
      resources: [
        { kind: "sysctl", name: "net.sim.generation", value: String(gen) },
        { kind: "sysctl", name: `net.sim.${host}`, value: String(gen) },
      ],
    }),
  };
}

describe("rollout resilience", () => {
  it("completes when the JetStream meta leader of a 3-node cluster is killed mid-rollout", async () => {
    const names = ["backend", "hv1", "hv2", "hv3", "hv4", "hv5"];
    site = await startSite({ basePort: 31800, nodes: 3, hosts: names.map((n) => ({ ...inventoryHost(n), role: n === "backend" ? "backend" : "vmhost" })) });
    for (const n of names) sims.push(startSimAgent(site, { hostname: n, host: new SimulatedHostRunner({ delayMs: 120 }), resyncMs: 1000 }));
    await Promise.all(sims.map((a) => a.started));
    const events: RolloutEvent[] = [];
    const leader = await site.server.waitForMetaLeader();
    let killed: string | undefined;
    const s = site;
    const rollout = new Rollout(s.cp, names.map((n) => sysctlTarget(n, 1)), { batch: { count: 1 }, applyTimeoutMs: 40_000 }, (e) => {
      events.push(e);
      // After the canary, in the middle of the rollout: kill the meta leader.
      if (e.event === "host-done" && e.host === "hv1" && !killed) {
        killed = leader;
        void s.server.kill(leader);
      }
    });
    const started = Date.now();
    const { result } = await rollout.run();
    expect(killed).toBe(leader);
    expect(result).toBe("success");
    expect(events.filter((e) => e.event === "host-done").map((e) => [e.host, (e as { ok: boolean }).ok])).toEqual(names.map((n) => [n, true]));
    for (const a of sims) expect(a.host.get("net.sim.generation")).toBe("1");
    expect(await site.server.waitForMetaLeader(killed)).not.toBe(killed);
    expect(Date.now() - started).toBeLessThan(60_000);
    const rows = await site.cp.status();
    expect(rows.filter((r) => r.drift).map((r) => r.host)).toEqual([]);
    // Nothing lost through the node's loss: no agent rolled back, every host still approved, its desired and applied revision the rollout's.
    expect(sims.filter((a) => a.events.some((e) => e.event === "lockout-rollback")).map((a) => a.agent.client.host)).toEqual([]);
    const mine = rows.filter((r) => names.includes(r.host));
    expect(mine.map((r) => [r.host, r.state])).toEqual(names.map((n) => [n, "approved"]));
    expect(mine.filter((r) => !r.applied || r.applied.rolledBack || r.applied.revision !== r.desired?.revision).map((r) => r.host)).toEqual([]);
    await site.server.restart(killed!);
  });

  it("netfleet rollout --resume continues a rollout whose controller was SIGKILLed; a new rollout meanwhile is refused", async () => {
    const inventoryDir = join(REPO, "inventories", "lab");
    const inventory = loadInventory(inventoryDir);
    site = await startSite({ basePort: 31810, hosts: inventory.hosts });
    const applies: string[] = [];
    for (const h of inventory.hosts) {
      const a = startAgent(site, {
        hostname: h.name,
        onAssignment: async (assignment, revision) => {
          applies.push(h.name);
          a.applied.push({ revision, hash: assignment.hash });
          await new Promise((r) => setTimeout(r, 1500));
          return { summary: { ok: assignment.resources.length, changed: assignment.resources.length, failed: 0, pending: 0 }, results: assignment.resources.map((r) => ({ id: `${r.kind}[${r.name}]`, result: true })) };
        },
      });
      agents.push(a);
    }
    await Promise.all(agents.map((a) => a.started));
    const stateDir = await writeControllerHome(site, inventoryDir);

    // The controller as its own process, killed once the backend (the canary) is done and hosta is being applied.
    const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(REPO, "packages/controller/src/cli.ts"), "rollout", inventoryDir, "--yes", "--state-dir", stateDir, "--json", "--timeout", "30"], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
    children.push(child);
    const lines: Record<string, unknown>[] = [];
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split("\n");
      buf = parts.pop()!;
      for (const l of parts) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
    });
    await eventually(() => lines.some((e) => e.event === "host-start" && e.host === "hosta"), "hosta published by the first controller", 30_000);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(lines.find((e) => e.event === "host-done" && e.host === "backend")).toMatchObject({ ok: true });
    expect(lines.some((e) => e.event === "done")).toBe(false);
    expect((await site.cp.loadRolloutState())?.state.phase).toBe("running");

    // The dead controller still holds the lock: a new rollout is refused (once the lock is stale it is pointed at --resume).
    const refused = memoryOutput(false);
    expect(await main(["rollout", inventoryDir, "--yes", "--state-dir", stateDir], refused)).toBe(4);
    expect(refused.stderr.join("\n")).toMatch(/another rollout of lab is running/);

    const out = memoryOutput(true);
    const code = await main(["rollout", inventoryDir, "--state-dir", stateDir, "--json", "--resume", "--lock-stale", "2", "--timeout", "30"], out);
    const events = out.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(code, out.stderr.join("\n")).toBe(0);
    expect(events.find((e) => e.event === "rollout")).toMatchObject({ resume: true });
    expect(events.find((e) => e.event === "done")).toMatchObject({ result: "success", ok: ["backend", "hosta", "hostb"] });
    // Nothing was applied twice: the backend is not redone, hosta (in flight when the controller died) is only awaited.
    expect(applies.sort()).toEqual(["backend", "hosta", "hostb"]);
    expect(events.filter((e) => e.event === "host-start").map((e) => e.host)).toEqual(["hosta", "hostb"]);
    expect(await site.cp.lock.holder()).toBeUndefined();

    // status and hosts through the CLI.
    const status = memoryOutput(true);
    expect(await main(["status", "--state-dir", stateDir, "--json"], status)).toBe(0);
    const st = status.values[0] as { hosts: { host: string; drift: boolean; enrolled: boolean; applied: { revision: number } | null }[]; rollout: { phase: string } };
    expect(st.hosts.map((h) => [h.host, h.enrolled, h.drift, h.applied?.revision])).toEqual([["backend", true, false, 1], ["hosta", true, false, 1], ["hostb", true, false, 1]]);
    expect(st.rollout.phase).toBe("done");
    const again = memoryOutput(true);
    expect(await main(["rollout", inventoryDir, "--yes", "--state-dir", stateDir, "--json"], again)).toBe(0);
    expect(again.stdout.map((l) => JSON.parse(l) as { event: string; status?: string }).filter((e) => e.event === "diff").every((e) => e.status === "unchanged")).toBe(true);
  });

  it("netfleet hosts lists and approves a pending claim through the running controller service; reject refuses an approved host, revoke withdraws it", async () => {
    const inventoryDir = join(REPO, "inventories", "lab");
    const inventory = loadInventory(inventoryDir);
    site = await startSite({ basePort: 31820, hosts: inventory.hosts });
    const stateDir = await writeControllerHome(site, inventoryDir);
    const good = startAgent(site, { hostname: "hosta" });
    // The site's join token only asks: hostb becomes a pending claim an operator approves.
    const bad = startAgent(site, { hostname: "hostb", token: TOKEN });
    agents.push(good, bad);
    await good.started;
    await eventually(async () => (await site!.cp.registry.claim("hostb"))?.state === "quarantined", "hostb a pending claim");
    const list = memoryOutput(true);
    expect(await main(["hosts", "--state-dir", stateDir, "--json"], list)).toBe(0);
    const rows = (list.values[0] as { hosts: { host: string; state: string; reason: string | null }[] }).hosts;
    expect(rows.map((r) => [r.host, r.state])).toEqual([["backend", "unenrolled"], ["hosta", "approved"], ["hostb", "quarantined"]]);
    expect(rows.find((r) => r.host === "hostb")?.reason).toMatch(/site token: waiting for an operator/);

    const text = memoryOutput(false);
    expect(await main(["hosts", "approve", "hostb", "--state-dir", stateDir], text)).toBe(0);
    expect(text.stdout).toEqual(["hostb: approved"]);
    await bad.started;
    expect(bad.client.host).toBe("hostb");
    const missing = memoryOutput(false);
    expect(await main(["hosts", "approve", "backend", "--state-dir", stateDir], missing)).toBe(2);
    expect(missing.stderr.join("")).toMatch(/backend: has not enrolled/);
    // An approved host is withdrawn by revoke (reject refuses one: it only drops pending claims).
    const reject = memoryOutput(false);
    expect(await main(["hosts", "reject", "hostb", "--state-dir", stateDir], reject)).toBe(2);
    expect(reject.stderr.join("")).toMatch(/hostb: is approved and has no pending claim .*hosts revoke/);
    expect(await main(["hosts", "revoke", "hostb", "--state-dir", stateDir], memoryOutput(false))).toBe(0);
    expect((await site.cp.registry.get("hostb"))?.state).toBe("rejected");
  });
});
