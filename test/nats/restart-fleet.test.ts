/**
 * Fault suite: a server restart under a fleet. 1,000 simulated agents
 * (test/bench/rollout-agents.ts processes: the real NatsAgent on simulated
 * hosts), enrolled with host tokens and connected to a real nats-server on
 * loopback; 10 of them hold an applied assignment. The server is SIGKILLed
 * and started again on the same store 1 s later. Every agent must be back
 * within 10 s of the server answering again (the spread is printed), none
 * may lose its connection for good or roll anything back, and nothing is
 * lost: every host is still approved, and the 10 hosts' desired and applied
 * revisions are still the ones published before the kill.
 *
 * The same measurement with 5,000 agents is test/bench/restart.ts
 * (`sh scripts/node.sh test/bench/restart.ts 5000`): it takes longer than
 * CI's budget for one file. Ports 32350 (client) and 32550 (monitoring).
 */
import { describe, expect, it } from "vitest";
import { restartBench } from "../bench/restart.ts";

describe("a server restart under 1,000 agents", () => {
  it("every agent is back within 10 s of the server, nothing lost, nothing rolled back", async () => {
    const t = Date.now();
    const row = await restartBench(1000, (l) => console.log(`${Date.now() - t} ms: ${l}`), { basePort: 32350, downMs: 1000, sample: 10 });
    console.log(JSON.stringify(row));
    expect(row.notBack).toBe(0);
    expect(row.backMaxMs).toBeLessThan(10_000);
    expect(row.lostForGood).toBe(0);
    expect(row.rollbacks).toBe(0);
    expect(row.approvedAfter).toBe(1000);
    expect(row.sampleIntact).toBe(10);
    // The server was really down, and jitter spread the returns.
    expect(row.serverBackMs).toBeGreaterThanOrEqual(1000);
    expect(row.spreadMs).toBeGreaterThan(200);
  }, 240_000);
});
