import { afterEach, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { heartbeatSubject } from "@netfleet/shared";
import { SITE, inventoryHost, startSimAgent, startSite, type SimAgent, type Site } from "./harness.ts";

/**
 * An agent beats at once when its connection comes back (a reconnect, or a new connection in place of
 * one closed for good), not only at its next period: a rollout that waits for the host's confirmation
 * may have missed its report while NATS was away, and the heartbeat carries the revision the agent runs
 * (controller store/applied.ts). Here the period is 10 minutes, so a heartbeat within seconds of the
 * reconnect can only be that one; the same quiet window before it is the control.
 */

let site: Site | undefined;
const sims: SimAgent[] = [];
afterEach(async () => {
  for (const a of sims.splice(0)) await a.agent.stop();
  await site?.close();
  site = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the agent's heartbeat after its connection comes back (real nats-server)", () => {
  it("beats within seconds of a forced reconnect and of a new connection, and not in the same quiet time before", async () => {
    site = await startSite({ basePort: 31990, hosts: [inventoryHost("hv1")] });
    const s = site;
    const sim = startSimAgent(s, { hostname: "hv1", heartbeatMs: 600_000 });
    sims.push(sim);
    await sim.started;
    const beats: number[] = [];
    const sub = s.cp.nc.subscribe(heartbeatSubject(SITE, "hv1"), { callback: () => void beats.push(Date.now()) });
    await s.cp.nc.flush();
    const nc = () => (sim.agent.client as unknown as { nc: NatsConnection | undefined }).nc!;

    // Control: no heartbeat in 2 s of a steady connection (the period is 10 minutes).
    await sleep(2000);
    const quiet = beats.length;

    // A reconnect (nats.js drops the socket and dials again): one heartbeat within 3 s.
    const reconnectAt = Date.now();
    await nc().reconnect();
    for (let i = 0; i < 60 && !beats.some((t) => t >= reconnectAt); i++) await sleep(50);
    const afterReconnect = beats.filter((t) => t >= reconnectAt);

    // A connection closed for good: the agent sets up a new one (after its backoff) and beats on it.
    const closedAt = Date.now();
    await nc().close();
    for (let i = 0; i < 200 && !beats.some((t) => t >= closedAt); i++) await sleep(50);
    const afterNew = beats.filter((t) => t >= closedAt);
    sub.unsubscribe();

    expect(quiet).toBe(0);
    expect(afterReconnect.length).toBeGreaterThanOrEqual(1);
    expect(afterReconnect[0]! - reconnectAt).toBeLessThan(3000);
    expect(sim.events.some((e) => e.event === "reconnected")).toBe(true);
    expect(afterNew.length).toBeGreaterThanOrEqual(1);
    expect(afterNew[0]! - closedAt).toBeLessThan(10_000);
  }, 60_000);
});
