import { afterEach, describe, expect, it } from "vitest";
import { assignmentFor, eventually, inventoryHost, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

let site: Site | undefined;
const agents: TestAgent[] = [];
afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
});

describe("3-node JetStream cluster", () => {
  it("keeps publishing and watching through the loss of the meta leader", async () => {
    site = await startSite({ basePort: 31500, nodes: 3, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    // hv1 knows every server; hv2 is pointed at the meta leader only (it learns the others from the cluster), so it surely loses its server.
    const leader = await site.server.waitForMetaLeader();
    const hv1 = startAgent(site, { hostname: "hv1", resyncMs: 2000 });
    const hv2 = startAgent(site, { hostname: "hv2", resyncMs: 2000, servers: [site.server.node(leader).url] });
    agents.push(hv1, hv2);
    await Promise.all([hv1.started, hv2.started]);

    const revisions: number[] = [];
    let killed: string | undefined;
    const started = Date.now();
    for (let n = 1; n <= 12; n++) {
      if (n === 5) {
        killed = await site.server.metaLeader();
        expect(killed).toBe(leader);
        await site.server.kill(killed!);
      }
      const [a] = await Promise.all([site.cp.publish(assignmentFor("hv1", n)), site.cp.publish(assignmentFor("hv2", n))]);
      revisions.push(a.revision);
    }
    expect(revisions).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const newLeader = await site.server.waitForMetaLeader(killed);
    expect(newLeader).not.toBe(killed);

    await eventually(() => hv1.applied.at(-1)?.revision === 12 && hv2.applied.at(-1)?.revision === 12, "both agents reach revision 12", 30_000);
    for (const agent of [hv1, hv2]) {
      const seen = agent.applied.map((a) => a.revision);
      expect(seen).toEqual([...new Set(seen)].sort((x, y) => x - y));
    }
    const report = await site.cp.waitForApplied("hv1", 12, 15_000);
    expect(report).toMatchObject({ revision: 12, rolledBack: false });
    expect(hv1.rollbacks).toEqual([]);
    expect(hv2.events.some((e) => e.event === "reconnected")).toBe(true);
    expect(Date.now() - started).toBeLessThan(60_000);

    // The lost node comes back and catches up.
    await site.server.restart(killed!);
    const rows = await site.cp.status();
    expect(rows.filter((r) => r.host.startsWith("hv")).map((r) => [r.host, r.drift])).toEqual([["hv1", false], ["hv2", false]]);
  });
});
