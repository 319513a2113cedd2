/**
 * Fault suite: an agent stopped during an apply (sim-agent.ts: the real
 * agent runtime on a simulated host, stopping through fleet-mode.ts
 * runUntilStopped exactly as `netfleet-agent run` does). SIGTERM in the
 * middle of a long apply ends the process within 10 s (the apply is
 * abandoned, logged `stop-timeout`, exit 0); SIGTERM while an apply waits
 * for its confirmation with the server gone ends it at once. Neither is a
 * lockout (lockout.ts, FleetMember.apply: "stopping is not a lockout"):
 * nothing is rolled back, the revision stays pending in the checkpoint, the
 * next start converges to the last confirmed assignment (NATS still down),
 * then applies and confirms the pending one once NATS is back. No desired
 * state and no applied report is lost. Ports 32330-32349.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "@netfleet/agent";
import { sealAssignment, type HostAssignment } from "@netfleet/shared";
import { SITE, eventually, inventoryHost, spawnSimAgent, startSite, type AgentProcess, type Site } from "./harness.ts";

const STOP_LIMIT_MS = 10_000;

let site: Site | undefined;
const procs: AgentProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill("SIGKILL");
      await p.exited;
    }
  }
  await site?.close();
  site = undefined;
});

/** SIGTERM; resolves with the exit code and how long the process took to end (ms). SIGKILL after 20 s (a failure). */
async function terminate(p: AgentProcess): Promise<{ code: number | null; ms: number }> {
  const t = Date.now();
  p.child.kill("SIGTERM");
  const kill = setTimeout(() => p.child.kill("SIGKILL"), 20_000);
  const code = await p.exited;
  clearTimeout(kill);
  return { code, ms: Date.now() - t };
}

function spawn(s: Site, options: Parameters<typeof spawnSimAgent>[1]): AgentProcess {
  const p = spawnSimAgent(s, options);
  procs.push(p);
  return p;
}

function sysctls(host: string, values: Record<string, string>): HostAssignment {
  return sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: Object.entries(values).map(([name, value]) => ({ kind: "sysctl" as const, name, value })) });
}

describe("an agent stopped during an apply (sim-agent.ts, the stop path of netfleet-agent run)", () => {
  it("in the middle of a long apply: exits within 10 s (stop-timeout), nothing rolled back; restarted, it converges and confirms", async () => {
    site = await startSite({ basePort: 32330, hosts: [inventoryHost("hv1")] });
    const s = site;
    let proc = spawn(s, { hostname: "hv1", delayMs: 5 });
    await eventually(() => proc.events.some((e) => e.event === "ready"), "agent ready", 30_000);
    const first = await s.cp.publish(sysctls("hv1", { "net.sim.a": "1" }));
    await s.cp.waitForApplied("hv1", first.revision, 15_000);
    expect((await terminate(proc)).code).toBe(0);

    // 20 resources x (observe, write, observe) x 400 ms: 24 s of apply.
    proc = spawn(s, { hostname: "hv1", delayMs: 400 });
    await eventually(() => proc.events.some((e) => e.event === "ready"), "agent ready again", 30_000);
    const long = await s.cp.publish(sysctls("hv1", Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`net.sim.k${i}`, "2"]))));
    await eventually(() => proc.events.some((e) => e.event === "applying" && e.revision === long.revision), "apply started", 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    const stopped = await terminate(proc);
    console.log(`mid-apply: exit ${stopped.code} after ${stopped.ms} ms`);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(STOP_LIMIT_MS);
    expect(proc.events.some((e) => e.event === "stop-timeout")).toBe(true);
    expect(proc.events.some((e) => e.event === "lockout-rollback")).toBe(false);
    const checkpoint = await new AgentState(join(s.dir, "agents", "hv1")).checkpoint();
    expect(checkpoint.current?.revision).toBe(first.revision);
    expect(checkpoint.pending?.revision).toBe(long.revision);

    proc = spawn(s, { hostname: "hv1", delayMs: 2 });
    const report = await s.cp.waitForApplied("hv1", long.revision, 30_000);
    expect(report).toMatchObject({ revision: long.revision, rolledBack: false, summary: { failed: 0 } });
    expect(proc.events.some((e) => e.event === "unconfirmed-revision-dropped")).toBe(true);
    expect(proc.events.some((e) => e.event === "lockout-rollback")).toBe(false);
    // The desired state and the applied report are both there.
    expect((await s.cp.status()).find((r) => r.host === "hv1")).toMatchObject({ drift: false, desired: { revision: long.revision }, applied: { revision: long.revision } });
  });

  it("waiting for an apply's confirmation with the server gone: exits at once, not a lockout; the next start, still without NATS, converges to the last confirmed assignment; with NATS back, the pending one is applied and confirmed", async () => {
    site = await startSite({ basePort: 32340, hosts: [inventoryHost("hv1")] });
    const s = site;
    let proc = spawn(s, { hostname: "hv1", delayMs: 100, confirmDeadlineMs: 20_000 });
    await eventually(() => proc.events.some((e) => e.event === "ready"), "agent ready", 30_000);
    const good = await s.cp.publish(sysctls("hv1", { "net.sim.a": "1" }));
    await s.cp.waitForApplied("hv1", good.revision, 15_000);

    const next = await s.cp.publish(sysctls("hv1", { "net.sim.a": "2", "net.sim.b": "2", "net.sim.c": "2" }));
    await eventually(() => proc.events.some((e) => e.event === "applying" && e.revision === next.revision), "apply started", 15_000);
    await s.server.kill("nf-1");
    await eventually(() => proc.events.some((e) => e.event === "confirm-retry"), "confirming without a server", 15_000);
    const stopped = await terminate(proc);
    console.log(`waiting for confirmation: exit ${stopped.code} after ${stopped.ms} ms`);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(3000);
    expect(proc.events.some((e) => e.event === "lockout-rollback")).toBe(false);
    const state = new AgentState(join(s.dir, "agents", "hv1"));
    expect((await state.checkpoint()).pending?.revision).toBe(next.revision);

    // Started again, NATS still down: it converges to the confirmed assignment first (the lockout guard across a stop).
    proc = spawn(s, { hostname: "hv1", delayMs: 2 });
    await eventually(() => proc.events.some((e) => e.event === "resume" && e.revision === good.revision), "resumed from the confirmed revision", 30_000);
    await eventually(() => proc.events.some((e) => e.event === "reconcile" && e.pass === "full" && e.hash === good.hash && e.failed === 0), "converged to it", 30_000);
    await eventually(() => proc.events.some((e) => e.event === "unconfirmed-revision-dropped" && e.revision === next.revision), "the pending revision dropped", 30_000);

    await s.server.restart("nf-1");
    const report = await s.cp.waitForApplied("hv1", next.revision, 30_000);
    expect(report).toMatchObject({ revision: next.revision, rolledBack: false, summary: { failed: 0 } });
    expect(proc.events.some((e) => e.event === "lockout-rollback")).toBe(false);
    expect((await s.cp.status()).find((r) => r.host === "hv1")).toMatchObject({ drift: false, desired: { revision: next.revision } });
  });
});
