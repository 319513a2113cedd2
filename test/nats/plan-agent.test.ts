/**
 * Saved plans against the real agent runtime (NatsAgent: engine, daemon,
 * check mode) on simulated sysctl hosts, through a real nats-server: the
 * plan is made from the agents' check replies (Rollout in check mode,
 * makePlan, written and read back as a file), and applied by a Rollout whose
 * targets carry it, as `netfleet rollout --plan` does.
 *   1. control: a plan applied on unchanged hosts does exactly what it says;
 *   2. a host changed by hand after the plan (the agents' periodic repair is
 *      60 s away): its agent refuses the plan's envelope (engine
 *      expectObserved), nothing of the plan runs there, not on its resyncs,
 *      not after the agent restarts; the other host gets the plan.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { sealAssignment } from "@netfleet/shared";
import { makePlan } from "../../packages/controller/src/rollout/planned.ts";
import { readPlanFile, signPlan, writePlanFile } from "../../packages/controller/src/rollout/plan-file.ts";
import { SITE, inventoryHost, startSimAgent, startSite, type SimAgent, type Site } from "./harness.ts";

const NAMES = ["hv1", "hv2"];
let site: Site | undefined;
const sims: SimAgent[] = [];
afterEach(async () => {
  for (const a of sims.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

function target(host: string, value: number): RolloutTarget {
  return {
    host,
    role: "vmhost",
    assignment: sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: [{ kind: "sysctl", name: "net.sim.plan", value: String(value) }] }),
  };
}

async function roll(s: Site, targets: RolloutTarget[], options: ConstructorParameters<typeof Rollout>[2] = {}) {
  const events: RolloutEvent[] = [];
  const outcome = await new Rollout(s.cp, targets, { applyTimeoutMs: 20_000, batch: { count: 1 }, ...options }, (e) => events.push(e)).run();
  return { ...outcome, events };
}

/** Checks `value` on every host, saves the plan to a file and reads it back; the targets that apply it. */
async function planFor(s: Site, value: number): Promise<RolloutTarget[]> {
  const check = await roll(s, NAMES.map((n) => target(n, value)), { check: true, requireObserved: true });
  expect(check.result).toBe("success");
  const file = join(s.dir, `plan-${value}.json`);
  await writePlanFile(file, signPlan(makePlan(SITE, check.checked!), s.signing));
  const plan = await readPlanFile(file);
  return NAMES.map((n) => {
    const p = plan.hosts.find((h) => h.host === n)!;
    expect(p.changes.map((c) => [c.id, c.fields])).toEqual([["sysctl[net.sim.plan]", ["value"]]]);
    return { ...target(n, value), plan: { basedOn: p.basedOn, observed: p.observed } };
  });
}

describe("saved plans on the real agent runtime", () => {
  it("an unchanged host applies the plan; a host changed since refuses it and runs nothing of it, then or later", async () => {
    site = await startSite({ basePort: 23220, hosts: NAMES.map((n) => inventoryHost(n)) });
    for (const n of NAMES) sims.push(startSimAgent(site, { hostname: n, host: new SimulatedHostRunner({ sysctls: { "net.sim.plan": "0" } }), resyncMs: 500 }));
    await Promise.all(sims.map((a) => a.started));
    const [hv1, hv2] = sims as [SimAgent, SimAgent];
    expect((await roll(site, NAMES.map((n) => target(n, 1)))).result).toBe("success");

    // 1. Control: planned, nothing changed since, applied: exactly the plan's value on both.
    const plan2 = await planFor(site, 2);
    const applied = await roll(site, plan2);
    expect(applied.result).toBe("success");
    expect([hv1.host.get("net.sim.plan"), hv2.host.get("net.sim.plan")]).toEqual(["2", "2"]);
    for (const t of plan2) expect((await site.cp.desired.read(t.host))!.envelope.plan).toEqual({ observed: t.plan!.observed });

    // 2. Planned; then hv2's value is changed by hand (its observed state moves); the plan applied with a budget of one.
    const plan3 = await planFor(site, 3);
    hv2.host.set("net.sim.plan", "7");
    const refused = await roll(site, plan3, { maxFail: { count: 1 } });
    expect(refused.result).toBe("partial");
    const done = refused.events.filter((e): e is Extract<RolloutEvent, { event: "host-done" }> => e.event === "host-done");
    expect(done.find((e) => e.host === "hv1")!.ok).toBe(true);
    expect(done.find((e) => e.host === "hv2")!.error).toMatch(/^refused by the agent: host changed since the plan \(observed [0-9a-f]+, plan made against [0-9a-f]+\)/);
    expect(hv1.host.get("net.sim.plan")).toBe("3");
    expect(hv2.host.get("net.sim.plan")).toBe("7");
    // Nor on its resyncs (every 0.5 s it reads its desired entry again): refused once, the revision kept out.
    await new Promise((r) => setTimeout(r, 2000));
    expect(hv2.host.get("net.sim.plan")).toBe("7");
    expect(hv2.events.filter((e) => e.event === "plan-refused").length).toBe(1);
    // Nor later: restarted, hv2's agent converges the assignment it had in force (2), never the refused plan's.
    await hv2.agent.stop();
    const again = startSimAgent(site, { hostname: "hv2", host: hv2.host });
    sims[1] = again;
    await again.started;
    await new Promise((r) => setTimeout(r, 1500));
    expect(hv2.host.get("net.sim.plan")).toBe("2");
  }, 90_000);
});
