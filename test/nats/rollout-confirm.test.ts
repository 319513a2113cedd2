import { afterEach, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { desiredBucket, encodeMessage, heartbeatSubject, kvSubject, reportSubject, sealAssignment, type Host, type Report } from "@netfleet/shared";
import { SITE, connectAsAgent, inventoryHost, startSimAgent, startSite, type SimAgent, type Site, storeApplied } from "./harness.ts";

/**
 * A rollout counts a host ok only once its agent confirmed the applied report (issue 18: "no false
 * successes"). The agent's report in the applied bucket is its lockout confirmation attempt, not
 * proof: an agent that then cannot confirm undoes the revision. So a report stored there is judged
 * ok only with the confirmation that follows it (the same report on the report subject, or a
 * heartbeat showing the revision), within the rollout's confirmation window.
 *
 * The attack: clients holding a host's own agent credentials (as a host cut off after its KV put
 * looks to the controller) store a success report of the revision the rollout published, and then
 * never confirm (hv2), undo it (hv3: a lockout rollback report), or confirm it (hv4 on the report
 * subject, hv5 by heartbeat: positive controls). hv1 runs the real agent runtime.
 */

let site: Site | undefined;
const sims: SimAgent[] = [];
const conns: NatsConnection[] = [];
afterEach(async () => {
  for (const nc of conns.splice(0)) await nc.close().catch(() => {});
  for (const a of sims.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

const NAMES = ["hv1", "hv2", "hv3", "hv4", "hv5"];
const WINDOW_MS = 3000;

function target(host: string, gen: number): RolloutTarget {
  const assignment = sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: SITE,
    host,
    role: "vmhost",
    resources: [{ kind: "sysctl" as const, name: `net.sim.${host}`, value: String(gen) }],
  });
  return { host, role: "vmhost", assignment };
}

/** A report as an agent stores it: success of `revision` with `hash`, (rolledBackRevision) the rollback of it, or (failed) a failed apply. */
function report(host: string, revision: number, hash: string | null, rolledBackRevision?: number, failed = false): Report {
  return {
    kind: "report",
    site: SITE,
    host,
    revision,
    hash,
    rolledBack: rolledBackRevision !== undefined,
    ...(rolledBackRevision !== undefined ? { rolledBackRevision } : {}),
    summary: { ok: failed ? 0 : 1, changed: failed ? 0 : 1, failed: failed ? 1 : 0, pending: 0 },
    results: [{ id: `sysctl[net.sim.${host}]`, result: !failed, comment: failed ? "refused by the host" : "changed" }],
    at: new Date().toISOString(),
  };
}

/**
 * A connection with the host's own agent credentials (closed after the test). It retries a lost server
 * every 100 ms: with nats.js's default wait (2 s plus jitter) its return after a restart could use up
 * most of the confirmation window that starts at the controller's return.
 */
async function impostor(s: Site, host: string): Promise<NatsConnection> {
  const nc = await connectAsAgent(s, host, { reconnectTimeWait: 100, reconnectJitter: 0, maxReconnectAttempts: -1 });
  conns.push(nc);
  return nc;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a rollout counts a host ok only on its agent's confirmation (real nats-server)", () => {
  it("an applied report never confirmed fails after the window, one undone fails with the lockout reason; confirmed ones (report subject, heartbeat, the real agent) are ok", async () => {
    const hosts: Host[] = NAMES.map((n) => inventoryHost(n));
    site = await startSite({ basePort: 31960, hosts });
    const s = site;
    const sim = startSimAgent(s, { hostname: "hv1" });
    sims.push(sim);
    await sim.started;
    const fakes = new Map<string, NatsConnection>();
    for (const h of NAMES.slice(1)) fakes.set(h, await impostor(s, h));

    const targets = NAMES.map((n) => target(n, 1));
    const hashOf = new Map(targets.map((t) => [t.host, t.assignment.hash]));
    const events: RolloutEvent[] = [];
    const stored = new Map<string, number>();
    const attacks: Promise<void>[] = [];
    let finished = false;
    /** What each impostor does once the rollout has published its revision. */
    const attack = async (host: string, revision: number): Promise<void> => {
      const nc = fakes.get(host)!;
      const success = encodeMessage(report(host, revision, hashOf.get(host)!));
      await storeApplied(nc, host, success);
      stored.set(host, Date.now());
      if (host === "hv3") {
        // The agent could not confirm: it undid the revision and stores its rollback report.
        await sleep(300);
        await storeApplied(nc, host, encodeMessage(report(host, 0, null, revision)));
      } else if (host === "hv4") {
        // Confirmed: the same report on the report subject, as the agent publishes it after its confirmation.
        await sleep(300);
        nc.publish(reportSubject(SITE, host), success);
        await nc.flush();
      } else if (host === "hv5") {
        // Confirmed, but that report was lost: heartbeats show the revision as running (bounded: until the rollout ends).
        for (let i = 0; i < 80 && !finished; i++) {
          nc.publish(heartbeatSubject(SITE, host), encodeMessage({ kind: "heartbeat", site: SITE, host, agentVersion: "0.1.0-fake", revision, hash: hashOf.get(host)!, uptimeS: 5, at: new Date().toISOString() }));
          await sleep(250);
        }
      }
    };
    const started = Date.now();
    const outcome = await new Rollout(s.cp, targets, { batch: { count: 4 }, maxFail: { count: 2 }, applyTimeoutMs: 30_000, confirmWindowMs: WINDOW_MS }, (e) => {
      events.push(e);
      if (e.event === "host-start" && e.host !== "hv1" && e.revision) attacks.push(attack(e.host, e.revision));
    }).run();
    finished = true;
    await Promise.all(attacks);

    const done = events.find((e): e is Extract<RolloutEvent, { event: "done" }> => e.event === "done")!;
    expect(done.ok.sort()).toEqual(["hv1", "hv4", "hv5"]);
    expect(done.failed.sort()).toEqual(["hv2", "hv3"]);
    expect(outcome.result).toBe("partial");
    expect(done.reasons.hv2).toMatch(/applied revision \d+ but never confirmed within 3 s: no report or heartbeat since; its lockout protection has likely undone it/);
    expect(done.reasons.hv3).toMatch(/the agent undid revision \d+ \(lost NATS after applying: lockout protection\)/);

    const hostDone = new Map(events.filter((e): e is Extract<RolloutEvent, { event: "host-done" }> => e.event === "host-done").map((e) => [e.host, e]));
    // Each failed host's event carries its reason; the state record keeps it too.
    expect(hostDone.get("hv2")).toMatchObject({ ok: false, error: done.reasons.hv2 });
    expect(hostDone.get("hv3")).toMatchObject({ ok: false, error: done.reasons.hv3 });
    const state = await s.cp.loadRolloutState({ withHosts: true });
    expect(state?.state.hosts?.hv2).toMatchObject({ status: "failed", error: done.reasons.hv2 });
    expect(state?.state.hosts?.hv3).toMatchObject({ status: "failed", error: done.reasons.hv3 });
    // The never-confirmed host is judged at the end of the window after its report was stored, not at the apply timeout.
    const judged = hostDone.get("hv2")!.ms;
    expect(judged).toBeGreaterThanOrEqual(WINDOW_MS);
    expect(judged).toBeLessThan(WINDOW_MS + 5000);
    // The rolled-back one is judged on its rollback report, within the window.
    expect(hostDone.get("hv3")!.ms).toBeLessThan(WINDOW_MS);
    // The real agent confirmed on the report subject: no waiting for the window.
    expect(hostDone.get("hv1")!.ms).toBeLessThan(WINDOW_MS);
    expect(hostDone.get("hv4")!.ms).toBeLessThan(WINDOW_MS);
    // hv5 was confirmed by a heartbeat, heard only once its success had waited (half the window here, 5 s by default).
    expect(hostDone.get("hv5")!.ms).toBeGreaterThanOrEqual(WINDOW_MS / 2);
    expect(s.events.some((e) => e.event === "confirm-heartbeats")).toBe(true);
    expect(sim.host.get("net.sim.hv1")).toBe("1");
    expect(Date.now() - started).toBeLessThan(25_000);
  }, 60_000);
});

describe("a revert counts a host reverted only on its agent's confirmation (real nats-server)", () => {
  it("over the budget, the revert of a host whose restore is never confirmed or undone fails with its reason; confirmed ones are reverted", async () => {
    const names = ["hv1", "hv2", "hv3", "hv4"];
    site = await startSite({ basePort: 31970, hosts: names.map((n) => inventoryHost(n)) });
    const s = site;
    const sim = startSimAgent(s, { hostname: "hv1" });
    sims.push(sim);
    await sim.started;
    const gen1 = names.map((n) => target(n, 1));
    const gen2 = names.map((n) => target(n, 2));
    const hash1 = new Map(gen1.map((t) => [t.host, t.assignment.hash]));
    const hash2 = new Map(gen2.map((t) => [t.host, t.assignment.hash]));
    /** Per impostor, what it does with each revision it is given: by phase (gen1, gen2, then the revert to gen1's document). */
    type Act = "confirm" | "never" | "undo" | "fail";
    const plan: Record<string, { gen1: Act; gen2: Act; revert: Act }> = {
      hv2: { gen1: "confirm", gen2: "confirm", revert: "never" },
      hv3: { gen1: "confirm", gen2: "fail", revert: "confirm" },
      hv4: { gen1: "confirm", gen2: "confirm", revert: "undo" },
    };
    const acts: Promise<void>[] = [];
    for (const host of Object.keys(plan)) {
      const nc = await impostor(s, host);
      let gen2Seen = false;
      // As its agent would, it follows its own desired key (a core subscription its credentials allow).
      nc.subscribe(kvSubject(desiredBucket(SITE), host), {
        callback: (_err, m) => {
          const v = JSON.parse(m.string()) as { revision: number; assignment: { hash: string } };
          const hash = v.assignment.hash;
          const phase = hash === hash2.get(host) ? "gen2" : hash === hash1.get(host) ? (gen2Seen ? "revert" : "gen1") : undefined;
          if (!phase) return;
          if (phase === "gen2") gen2Seen = true;
          const act = plan[host]![phase];
          const data = encodeMessage(report(host, v.revision, hash, undefined, act === "fail"));
          acts.push(
            (async () => {
              await storeApplied(nc, host, data);
              if (act === "undo") await storeApplied(nc, host, encodeMessage(report(host, 0, null, v.revision)));
              if (act === "confirm" || act === "fail") {
                nc.publish(reportSubject(SITE, host), data);
                await nc.flush();
              }
            })(),
          );
        },
      });
      await nc.flush();
    }
    const roll = async (targets: RolloutTarget[]) => {
      const events: RolloutEvent[] = [];
      const { result } = await new Rollout(s.cp, targets, { batch: { count: 3 }, applyTimeoutMs: 30_000, confirmWindowMs: WINDOW_MS }, (e) => events.push(e)).run();
      return { result, events };
    };
    const first = await roll(gen1);
    expect(first.result).toBe("success");

    const second = await roll(gen2);
    await Promise.all(acts);
    expect(second.result).toBe("failed");
    const reverted = new Map(second.events.filter((e): e is Extract<RolloutEvent, { event: "host-reverted" }> => e.event === "host-reverted").map((e) => [e.host, e]));
    expect([...reverted.keys()].sort()).toEqual(names);
    expect(reverted.get("hv1")).toMatchObject({ ok: true });
    expect(reverted.get("hv3")).toMatchObject({ ok: true });
    expect(reverted.get("hv2")).toMatchObject({ ok: false, error: expect.stringMatching(/^applied revision \d+ but never confirmed within 3 s: no report or heartbeat since; its lockout protection has likely undone it$/) });
    expect(reverted.get("hv4")).toMatchObject({ ok: false, error: expect.stringMatching(/^the agent undid revision \d+ \(lost NATS after applying: lockout protection\)$/) });
    const state = await s.cp.loadRolloutState({ withHosts: true });
    // The state (and the done event's reasons) keep each reason, marked as the revert's.
    expect(state?.state.hosts?.hv2).toMatchObject({ status: "revert-failed", error: `revert: ${reverted.get("hv2")!.error}` });
    expect(state?.state.hosts?.hv4).toMatchObject({ status: "revert-failed", error: `revert: ${reverted.get("hv4")!.error}` });
    const done = second.events.find((e): e is Extract<RolloutEvent, { event: "done" }> => e.event === "done")!;
    expect(done.failed.sort()).toEqual(["hv2", "hv3", "hv4"]);
    expect(done.reasons.hv2).toBe(`revert: ${reverted.get("hv2")!.error}`);
    expect(state?.state.hosts?.hv1).toMatchObject({ status: "reverted" });
    expect(sim.host.get("net.sim.hv1")).toBe("1");
  }, 60_000);
});

/** This test's window: the success is held at least half of it before the cut, so the cut must come within the other half. */
const OUTAGE_WINDOW_MS = 6000;

describe("a confirmation through the controller's own reconnect (real nats-server)", () => {
  it("a stored success is not judged while the controller is cut off; after its reconnect the window starts again and the confirmation counts", async () => {
    site = await startSite({ basePort: 31980, hosts: [inventoryHost("hv1")] });
    const s = site;
    const nc = await impostor(s, "hv1");
    const events: RolloutEvent[] = [];
    let acting: Promise<void> | undefined;
    const act = async (revision: number, hash: string): Promise<void> => {
      const data = encodeMessage(report("hv1", revision, hash));
      await storeApplied(nc, "hv1", data);
      // Cut off only once the controller holds the success (its heartbeat subscription starts at half the window):
      // an entry its watch delivers after the reconnect is a plain candidate, not the case under test.
      for (let i = 0; i < 100 && !s.events.some((e) => e.event === "confirm-heartbeats"); i++) await sleep(50);
      // The server goes away for longer than the window, and comes back on the same store.
      await s.server.kill("nf-1");
      await sleep(OUTAGE_WINDOW_MS + 1500);
      await s.server.restart("nf-1");
      // Published once the controller is back (what it heard while away is lost): its candidate waited through the outage.
      for (let i = 0; i < 200 && !s.events.some((e) => e.event === "confirm-reconnect"); i++) await sleep(100);
      for (let i = 0; i < 100 && nc.isClosed() === false && !events.some((e) => e.event === "host-done"); i++) {
        nc.publish(reportSubject(SITE, "hv1"), data);
        await nc.flush().catch(() => {});
        await sleep(300);
      }
    };
    const t = target("hv1", 1);
    const outcome = await new Rollout(s.cp, [t], { applyTimeoutMs: 60_000, confirmWindowMs: OUTAGE_WINDOW_MS }, (e) => {
      events.push(e);
      if (e.event === "host-start" && e.revision) acting = act(e.revision, t.assignment.hash);
    }).run();
    await acting;
    const done = events.find((e): e is Extract<RolloutEvent, { event: "host-done" }> => e.event === "host-done")!;
    expect(done, JSON.stringify(done)).toMatchObject({ host: "hv1", ok: true });
    expect(outcome.result).toBe("success");
    // Judged after the outage (longer than the window), on the confirmation heard once back.
    expect(done.ms).toBeGreaterThan(OUTAGE_WINDOW_MS + 1500);
    // The cut came while the success was held: heartbeats were asked for (present, not -1) before the reconnect.
    const heartbeatsAt = s.events.findIndex((e) => e.event === "confirm-heartbeats");
    expect(heartbeatsAt).toBeGreaterThanOrEqual(0);
    expect(heartbeatsAt).toBeLessThan(s.events.findIndex((e) => e.event === "confirm-reconnect"));
    expect(s.events.filter((e) => e.event === "confirm-reconnect").length).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
