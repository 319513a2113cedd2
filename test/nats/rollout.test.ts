import { afterEach, describe, expect, it } from "vitest";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { LockHeldError, Rollout, type RolloutEvent, type RolloutOptions, type RolloutTarget } from "@netfleet/controller";
import { sealAssignment, type HostAssignment, type Host } from "@netfleet/shared";
import { SITE, eventually, inventoryHost, startSimAgent, startSite, type Site, type SimAgent } from "./harness.ts";

let site: Site | undefined;
const agents: SimAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

const NAMES = ["backend", "hv1", "hv2", "hv3", "hv4"];
const hostsOf = (): Host[] => NAMES.map((n) => ({ ...inventoryHost(n), role: n === "backend" ? "backend" : "vmhost" }));

/** Generation `gen` of a host's sysctl-only assignment; `extra` adds resources (e.g. one the host refuses). */
function target(host: string, gen: number, extra: Record<string, string> = {}): RolloutTarget {
  const role = host === "backend" ? "backend" : "vmhost";
  const values: Record<string, string> = { "net.sim.generation": String(gen), [`net.sim.${host}`]: String(gen), ...extra };
  const assignment: HostAssignment = sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: SITE,
    host,
    role,
    resources: Object.entries(values).map(([name, value]) => ({ kind: "sysctl" as const, name, value })),
  });
  return { host, role, assignment };
}

async function fleet(s: Site, options: { delayMs?: number } = {}): Promise<Map<string, SimAgent>> {
  const out = new Map<string, SimAgent>();
  for (const name of NAMES) {
    const host = new SimulatedHostRunner({ failWrites: /^net\.sim\.forbidden=/, ...(options.delayMs ? { delayMs: options.delayMs } : {}) });
    const a = startSimAgent(s, { hostname: name, host, resyncMs: 2000 });
    agents.push(a);
    out.set(name, a);
  }
  await Promise.all([...out.values()].map((a) => a.started));
  return out;
}

async function roll(s: Site, targets: RolloutTarget[], options: RolloutOptions = {}): Promise<{ result: string; events: RolloutEvent[] }> {
  const events: RolloutEvent[] = [];
  const { result } = await new Rollout(s.cp, targets, { applyTimeoutMs: 20_000, ...options }, (e) => events.push(e)).run();
  return { result, events };
}

const of = <K extends RolloutEvent["event"]>(events: RolloutEvent[], kind: K) => events.filter((e): e is Extract<RolloutEvent, { event: K }> => e.event === kind);

describe("netfleet rollout (on real nats-server, simulated hosts with the real engine)", () => {
  it("shows the diff, rolls the backend canary then waves, completes; a second run changes nothing; a concurrent one is refused", async () => {
    site = await startSite({ basePort: 31700, hosts: hostsOf() });
    const hosts = await fleet(site, { delayMs: 20 });
    const gen1 = NAMES.map((n) => target(n, 1));
    const first = await roll(site, gen1, { batch: { count: 2 } });
    expect(first.result).toBe("success");
    expect(of(first.events, "diff").map((d) => [d.host, d.status])).toEqual(NAMES.map((n) => [n, "new"]));
    expect(of(first.events, "wave").map((w) => w.hosts)).toEqual([["backend"], ["hv1", "hv2"], ["hv3", "hv4"]]);
    // The diff comes before anything is published; the backend is done before any VM host starts.
    const kinds = first.events.map((e) => e.event);
    expect(kinds.lastIndexOf("diff")).toBeLessThan(kinds.indexOf("host-start"));
    const doneAt = (h: string) => first.events.findIndex((e) => e.event === "host-done" && e.host === h);
    const startAt = (h: string) => first.events.findIndex((e) => e.event === "host-start" && e.host === h);
    expect(doneAt("backend")).toBeLessThan(Math.min(...["hv1", "hv2", "hv3", "hv4"].map(startAt)));
    expect(of(first.events, "done")[0]).toMatchObject({ result: "success", ok: NAMES, failed: [] });
    for (const [name, a] of hosts) expect(a.host.get(`net.sim.${name}`)).toBe("1");
    expect((await site.cp.status()).filter((r) => r.drift)).toEqual([]);

    const again = await roll(site, gen1);
    expect(again.result).toBe("success");
    expect(of(again.events, "diff").every((d) => d.status === "unchanged")).toBe(true);
    expect(of(again.events, "host-start")).toEqual([]);

    // Generation 2 on slow hosts; a second rollout started meanwhile is refused by the lock.
    const gen2 = NAMES.map((n) => target(n, 2));
    for (const a of hosts.values()) (a.host as unknown as { options: { delayMs: number } }).options.delayMs = 300;
    const running = roll(site, gen2, { batch: { percent: 50 } });
    await eventually(async () => (await site!.cp.lock.holder()) !== undefined, "lock taken");
    await expect(roll(site, gen2)).rejects.toBeInstanceOf(LockHeldError);
    const second = await running;
    expect(second.result).toBe("success");
    const diff = of(second.events, "diff").find((d) => d.host === "hv1")!;
    expect(diff).toMatchObject({ status: "changed", from: { revision: 1 }, diff: { added: [], removed: [] } });
    expect(diff.diff.changed.map((c) => c.id).sort()).toEqual(["sysctl[net.sim.generation]", "sysctl[net.sim.hv1]"]);
    expect(await site.cp.lock.holder()).toBeUndefined();
    expect((await site.cp.loadRolloutState())?.state.phase).toBe("done");
  });

  it("a failing canary stops the rollout and reverts it; over the budget in a later wave, every host changed is reverted", async () => {
    site = await startSite({ basePort: 31710, hosts: hostsOf() });
    const hosts = await fleet(site);
    expect((await roll(site, NAMES.map((n) => target(n, 1)))).result).toBe("success");
    const before = new Map((await site.cp.status()).map((r) => [r.host, r.desired!]));

    // Generation 2 asks the backend (the canary) for something it cannot do.
    const bad = NAMES.map((n) => target(n, 2, n === "backend" ? { "net.sim.forbidden": "1" } : {}));
    const canary = await roll(site, bad, { batch: { count: 2 }, maxFail: { count: 3 } });
    expect(canary.result).toBe("failed");
    expect(of(canary.events, "budget-exceeded")[0]).toMatchObject({ canary: true, failed: ["backend"] });
    expect(of(canary.events, "host-done")).toHaveLength(1);
    expect(of(canary.events, "host-done")[0]!.error).toMatch(/resource\(s\) failed: sysctl\[net\.sim\.forbidden\]/);
    expect(of(canary.events, "host-reverted")).toMatchObject([{ host: "backend", ok: true }]);
    expect(hosts.get("backend")!.host.get("net.sim.backend")).toBe("1");
    const rows = new Map((await site.cp.status()).map((r) => [r.host, r]));
    expect(rows.get("backend")).toMatchObject({ drift: false, desired: { hash: before.get("backend")!.hash } });
    for (const n of ["hv1", "hv2", "hv3", "hv4"]) expect(rows.get(n)!.desired).toEqual(before.get(n));
    expect((await site.cp.loadRolloutState())?.state).toMatchObject({ phase: "failed" });

    // Canary fine, two VM hosts of a wave fail with a budget of 1: the canary and that wave are put back.
    const wave = NAMES.map((n) => target(n, 3, n === "hv1" || n === "hv2" ? { "net.sim.forbidden": "1" } : {}));
    const over = await roll(site, wave, { batch: { count: 2 }, maxFail: { count: 1 } });
    expect(over.result).toBe("failed");
    expect(of(over.events, "budget-exceeded")[0]).toMatchObject({ canary: false });
    expect(of(over.events, "host-reverted").map((e) => [e.host, e.ok]).sort()).toEqual([["backend", true], ["hv1", true], ["hv2", true]]);
    for (const n of NAMES) expect(hosts.get(n)!.host.get(`net.sim.${n}`)).toBe("1");
    expect(of(over.events, "host-start").map((e) => e.host)).not.toContain("hv3");
    expect(of(over.events, "done")[0]).toMatchObject({ skipped: ["hv3", "hv4"] });

    // Within the budget: partial.
    const partial = await roll(site, NAMES.map((n) => target(n, 4, n === "hv4" ? { "net.sim.forbidden": "1" } : {})), { batch: { count: 2 }, maxFail: { count: 1 } });
    expect(partial.result).toBe("partial");
    expect(of(partial.events, "done")[0]).toMatchObject({ failed: ["hv4"], reverted: [] });
  });

  it("--check asks every agent what it would change and publishes nothing", async () => {
    site = await startSite({ basePort: 31720, hosts: hostsOf() });
    const hosts = await fleet(site);
    expect((await roll(site, NAMES.map((n) => target(n, 1)))).result).toBe("success");
    const before = await site.cp.status();
    const check = await roll(site, NAMES.map((n) => target(n, 2)), { check: true, batch: { percent: 100 } });
    expect(check.result).toBe("success");
    const hv1 = of(check.events, "host-done").find((e) => e.host === "hv1")!;
    expect(hv1).toMatchObject({ ok: true, summary: { pending: 2, changed: 0 } });
    // Each would-change item carries its values, old -> new (issue 16: readable check mode).
    expect(hv1.wouldChange).toEqual(expect.arrayContaining([{ id: "sysctl[net.sim.hv1]", fields: ["value"], values: [{ field: "value", before: "1", after: "2" }] }]));
    expect(await site.cp.status()).toEqual(before.map((r) => ({ ...r, lastSeen: expect.any(String) })));
    expect(hosts.get("hv1")!.host.get("net.sim.hv1")).toBe("1");
    // A host whose agent does not answer fails the check; within the budget the result is partial.
    await hosts.get("hv4")!.agent.stop();
    const partial = await roll(site, NAMES.map((n) => target(n, 2)), { check: true, maxFail: { count: 1 }, applyTimeoutMs: 2000 });
    expect(partial.result).toBe("partial");
    expect(of(partial.events, "host-done").find((e) => e.host === "hv4")).toMatchObject({ ok: false, error: expect.stringMatching(/not connected|timeout/i) });
  });

  it("--abandon starts anew over a dead controller's stale lock; a live lock is never taken", async () => {
    site = await startSite({ basePort: 31730, hosts: hostsOf() });
    await fleet(site);
    await site.cp.lock.acquire("dead-controller", "r0");
    await expect(roll(site, NAMES.map((n) => target(n, 1)), { abandon: true, lockStaleMs: 5000 })).rejects.toBeInstanceOf(LockHeldError);
    await new Promise((r) => setTimeout(r, 700));
    await expect(roll(site, NAMES.map((n) => target(n, 1)), { lockStaleMs: 500 })).rejects.toThrow(/--resume, or start over with --abandon/);
    const fresh = await roll(site, NAMES.map((n) => target(n, 1)), { abandon: true, lockStaleMs: 500 });
    expect(fresh.result).toBe("success");
    expect(await site.cp.lock.holder()).toBeUndefined();
  });
});
