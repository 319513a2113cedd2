import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "@netfleet/agent";
import { join } from "node:path";
import { assignmentFor, eventually, inventoryHost, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

let site: Site | undefined;
const agents: TestAgent[] = [];
afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
});

describe("lockout protection", () => {
  it("rolls back when NATS is unreachable after an apply, and reports the rollback once it is back", async () => {
    site = await startSite({ basePort: 31400, hosts: [inventoryHost("hv1")] });
    const s = site;
    let cutAfterApplyOf = 0;
    const agent = startAgent(s, {
      hostname: "hv1",
      confirmDeadlineMs: 1500,
      onAssignment: async (a, revision) => {
        agent.applied.push({ revision, hash: a.hash });
        // This apply "cuts the host off": the server goes away before the agent can confirm.
        if (revision === cutAfterApplyOf) await s.server.kill("nf-1");
        return { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [] };
      },
    });
    agents.push(agent);
    await agent.started;
    const good = await s.cp.publish(assignmentFor("hv1", 1));
    await s.cp.waitForApplied("hv1", good.revision, 10_000);

    const bad = assignmentFor("hv1", 2);
    cutAfterApplyOf = 2;
    const published = await s.cp.publish(bad);
    await eventually(() => agent.rollbacks.length === 1, "rollback called", 10_000);
    expect(agent.rollbacks).toEqual([good.hash]);
    // The rollback's report is stored after the rollback returns: wait for that write, not only the call.
    const state = new AgentState(join(s.dir, "agents", "hv1"));
    await eventually(async () => (await state.checkpoint()).unsentReport !== undefined, "rollback report stored", 10_000);
    const onDisk = await state.checkpoint();
    expect(onDisk.current?.revision).toBe(good.revision);
    expect(onDisk.rolledBack).toEqual({ revision: published.revision, hash: bad.hash });
    expect(onDisk.unsentReport).toMatchObject({ rolledBack: true, revision: good.revision, rolledBackRevision: published.revision });

    const started = Date.now();
    await s.server.restart("nf-1");
    const report = await s.cp.waitForApplied("hv1", published.revision, 20_000);
    expect(report).toMatchObject({ rolledBack: true, revision: good.revision, hash: good.hash, rolledBackRevision: published.revision });
    expect(Date.now() - started).toBeLessThan(15_000);
    const row = (await s.cp.status()).find((r) => r.host === "hv1");
    expect(row).toMatchObject({ drift: true, desired: { revision: published.revision }, applied: { revision: good.revision, rolledBack: true } });
    expect((await agent.client.idle(), agent.applied.map((a) => a.revision))).toEqual([1, 2]);

    // The undone revision is not applied again; the next one is.
    const fixed = await s.cp.publish(assignmentFor("hv1", 3));
    await s.cp.waitForApplied("hv1", fixed.revision, 10_000);
    expect(agent.applied.map((a) => a.revision)).toEqual([1, 2, fixed.revision]);
    expect(agent.rollbacks).toHaveLength(1);
  });

  it("does not roll back when the confirmation succeeds, and a stopped agent leaves the host as it is", async () => {
    site = await startSite({ basePort: 31410, hosts: [inventoryHost("hv1")] });
    const agent = startAgent(site, { hostname: "hv1", confirmDeadlineMs: 1500 });
    agents.push(agent);
    await agent.started;
    const p = await site.cp.publish(assignmentFor("hv1", 1));
    await site.cp.waitForApplied("hv1", p.revision, 10_000);
    await site.server.kill("nf-1");
    await new Promise((r) => setTimeout(r, 2500));
    await agent.client.stop();
    expect(agent.rollbacks).toEqual([]);
    expect(agent.client.current?.revision).toBe(p.revision);
  });
});
