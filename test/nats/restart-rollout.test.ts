/**
 * Fault suite: a server restart mid-rollout, and the reconnect schedule in
 * the real nats.js.
 *
 * 1. The agent's schedule inside nats.js v3.4.0's own reconnect loop (not the
 *    unit test's model of it: packages/agent/src/fleet/reconnect.test.ts):
 *    a connection made by connectNats, its server killed for 9 s. With the
 *    worst jitter, the model says the dials come at 0, 250, 750, 1750, 3750,
 *    7750, 12750 ms after the disconnect (one step per dial, 5 s cap), and
 *    the connection is back at the first dial after the server is.
 * 2. A rollout of 40 agents (the real agent runtime on simulated hosts, in
 *    this process; default waves: a canary, then 25 %) whose server is
 *    SIGKILLed while the first wave is applying and started again 1 s later:
 *    it completes with success and no lockout rollback (the agents are back
 *    well inside their 20 s confirmation deadline), and no desired state,
 *    approval or applied report is lost.
 * Ports 32360-32379 (monitoring 32560-32579).
 */
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { sealAssignment } from "@netfleet/shared";
import { Backoff, connectNats } from "../../packages/agent/src/fleet/connection.ts";
import { SITE, inventoryHost, startSimAgent, startSite, type Site, type SimAgent } from "./harness.ts";

let site: Site | undefined;
const sims: SimAgent[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0)) await f();
  for (const a of sims.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

/** The agent's backoff, recording when nats.js dials (reconnectToServer calls dialed() once per dial). */
class RecordingBackoff extends Backoff {
  readonly dialTimes: number[] = [];
  override dialed(): void {
    this.dialTimes.push(Date.now());
    super.dialed();
  }
}

function target(host: string, gen: number): RolloutTarget {
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

describe("reconnects in the real nats.js, and a rollout through a server restart", () => {
  it("nats.js dials on the agent's schedule: one step per dial, the cap, back at the first dial after the server", async () => {
    site = await startSite({ basePort: 32360, hosts: [inventoryHost("hv1")] });
    const backoff = new RecordingBackoff({}, () => 0.999999);
    const stop = new AbortController();
    const nc = await connectNats({ servers: site.server.urls }, { user: "controller", pass: site.controllerPassword, name: "reconnect-probe" }, backoff, stop.signal);
    expect(nc).toBeDefined();
    cleanups.push(async () => {
      stop.abort();
      await nc!.close();
    });
    let reconnectedAt = 0;
    let disconnectedAt = 0;
    void (async () => {
      for await (const s of nc!.status()) {
        if (s.type === "disconnect" && !disconnectedAt) disconnectedAt = Date.now();
        if (s.type === "reconnect") reconnectedAt = Date.now();
      }
    })();
    const before = backoff.dialTimes.length;
    await site.server.kill("nf-1");
    await new Promise((r) => setTimeout(r, 9000));
    await site.server.restart("nf-1");
    const serverBack = Date.now();
    const deadline = Date.now() + 15_000;
    while (!reconnectedAt && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const dials = backoff.dialTimes.slice(before);
    const t0 = dials[0]!;
    const rel = dials.map((t) => t - t0);
    console.log(`dials after the disconnect (ms): ${rel.join(", ")}; server answering at ${serverBack - t0}, reconnected at ${reconnectedAt - t0}`);
    // The first dial: at once, or (a connection made less than one wait ago, as here) one wait after that connect (protocol.ts:674).
    expect(t0 - disconnectedAt).toBeLessThan(300);
    // The model's times (one step per dial: 250, 500, 1000, 2000, 4000, then the 5 s cap), give or take timers.
    const model = [0, 250, 750, 1750, 3750, 7750];
    for (let i = 0; i < model.length; i++) {
      expect(rel[i]).toBeGreaterThanOrEqual(model[i]! - 5);
      expect(rel[i]).toBeLessThan(model[i]! + 250 * (i + 1));
    }
    const gaps = rel.slice(1).map((t, i) => t - rel[i]!);
    expect(Math.max(...gaps)).toBeLessThan(5000 + 300);
    expect(reconnectedAt).toBeGreaterThan(0);
    expect(reconnectedAt - serverBack).toBeLessThan(5000 + 500);
  });

  it("a rollout completes through a server restart while a wave applies: no lockout rollback, nothing lost", async () => {
    const names = ["backend", ...Array.from({ length: 39 }, (_, i) => `hv${i + 1}`)];
    site = await startSite({ basePort: 32370, hosts: names.map((n) => ({ ...inventoryHost(n), role: n === "backend" ? "backend" : "vmhost" })) });
    const s = site;
    // 2 resources x (observe, write, observe) x 150 ms: each apply takes about 1 s; the agents' confirmation deadline is 20 s.
    for (const n of names) sims.push(startSimAgent(s, { hostname: n, host: new SimulatedHostRunner({ delayMs: 150 }), resyncMs: 60_000, heartbeatMs: 5000, confirmDeadlineMs: 20_000 }));
    await Promise.all(sims.map((a) => a.started));

    const events: RolloutEvent[] = [];
    let restarted: Promise<void> | undefined;
    let killedAt = 0;
    let backAt = 0;
    const rollout = new Rollout(s.cp, names.map((n) => target(n, 1)), { batch: { percent: 25 }, applyTimeoutMs: 60_000 }, (e) => {
      events.push(e);
      // The first wave after the canary has started: kill the server while its hosts apply, back 1 s later.
      if (e.event === "wave" && e.index === 1 && !restarted) {
        restarted = (async () => {
          await new Promise((r) => setTimeout(r, 300));
          killedAt = Date.now();
          await s.server.kill("nf-1");
          await new Promise((r) => setTimeout(r, 1000));
          await s.server.restart("nf-1");
          backAt = Date.now();
        })();
      }
    });
    const started = Date.now();
    const { result } = await rollout.run();
    await restarted;
    console.log(`rollout through a restart: ${result} in ${Date.now() - started} ms; server killed at ${killedAt - started} ms, answering again ${backAt - killedAt} ms later`);
    expect(killedAt).toBeGreaterThan(0);
    expect(result).toBe("success");
    const done = events.filter((e): e is Extract<RolloutEvent, { event: "host-done" }> => e.event === "host-done");
    expect(done.filter((e) => !e.ok).map((e) => e.host)).toEqual([]);
    expect(done.map((e) => e.host).sort()).toEqual([...names].sort());
    // The server was restarted while hosts of the wave were applying, and none rolled back.
    const wave1 = (events.find((e) => e.event === "wave" && e.index === 1) as Extract<RolloutEvent, { event: "wave" }>).hosts;
    expect(wave1.length).toBeGreaterThan(5);
    const rollbacks = sims.flatMap((a) => a.events.filter((e) => e.event === "lockout-rollback").map(() => a.agent.client.host));
    expect(rollbacks).toEqual([]);
    const reconnected = sims.filter((a) => a.events.some((e) => e.event === "reconnected" || e.event === "connected")).length;
    expect(reconnected).toBe(names.length);
    for (const a of sims) expect(a.host.get("net.sim.generation")).toBe("1");
    // Nothing lost: every host approved, desired and applied at the rollout's revision, no drift.
    const rows = (await s.cp.status()).filter((r) => names.includes(r.host));
    expect(rows.map((r) => r.state)).toEqual(names.map(() => "approved"));
    expect(rows.filter((r) => r.drift || !r.applied || r.applied.rolledBack || r.applied.revision !== r.desired?.revision).map((r) => r.host)).toEqual([]);
  });
});
