import { afterEach, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { UnconfirmedError } from "@netfleet/controller";
import { encodeMessage, reportSubject, type Report } from "@netfleet/shared";
import { SITE, connectAsAgent, inventoryHost, startSite, type Site, storeApplied } from "./harness.ts";

/**
 * The order a loaded controller hears things in: an agent stores its report in the applied bucket,
 * gets the acknowledgement, and publishes the same report on the report subject; the controller can
 * hear that publication BEFORE the applied bucket's watch delivers the entry, and before the rollout
 * has started waiting for the host (seen at 10,000 hosts: 3 hosts of the last wave failed as "never
 * confirmed" while every report had been published). Such a confirmation must still count; a report
 * that differs from the stored one must not (the stored success stays unconfirmed and fails at the
 * window).
 */

let site: Site | undefined;
const conns: NatsConnection[] = [];
afterEach(async () => {
  for (const nc of conns.splice(0)) await nc.close().catch(() => {});
  await site?.close();
  site = undefined;
});

const HASH = "a".repeat(64);

function report(host: string, revision: number, at: string): Report {
  return {
    kind: "report",
    site: SITE,
    host,
    revision,
    hash: HASH,
    rolledBack: false,
    summary: { ok: 1, changed: 1, failed: 0, pending: 0 },
    results: [{ id: `sysctl[net.sim.${host}]`, result: true, comment: "changed" }],
    at,
  };
}

/** A connection with the host's own agent credentials (closed after the test). */
async function agentConnection(s: Site, host: string): Promise<NatsConnection> {
  const nc = await connectAsAgent(s, host);
  conns.push(nc);
  return nc;
}

describe("a confirmation heard before its applied entry (real nats-server)", () => {
  it("counts when the same bytes are stored after it; a different report heard first does not confirm the stored one", async () => {
    site = await startSite({ basePort: 31980, hosts: ["hv1", "hv2"].map((n) => inventoryHost(n)) });
    const s = site;
    expect(await s.cp.watchApplied()).toBe(true);
    const hv1 = await agentConnection(s, "hv1");
    const hv2 = await agentConnection(s, "hv2");

    const at = new Date().toISOString();
    const good = encodeMessage(report("hv1", 1, at));
    // hv1: the report subject first (nobody waits for hv1 yet, nothing of it is stored), then the entry.
    hv1.publish(reportSubject(SITE, "hv1"), good);
    await hv1.flush();
    // hv2 (the control): what it publishes first is not what it stores.
    hv2.publish(reportSubject(SITE, "hv2"), encodeMessage(report("hv2", 1, "2026-01-01T00:00:00.000Z")));
    await hv2.flush();
    await new Promise((r) => setTimeout(r, 300));
    await storeApplied(hv1, "hv1", good);
    await storeApplied(hv2, "hv2", encodeMessage(report("hv2", 1, at)));
    // Both entries are in the controller's view before anyone waits (bounded: 5 s).
    for (let i = 0; i < 50 && !((await s.cp.lastApplied("hv1"))?.revision === 1 && (await s.cp.lastApplied("hv2"))?.revision === 1); i++) await new Promise((r) => setTimeout(r, 100));

    const t = Date.now();
    const confirmed = await s.cp.waitForConfirmed("hv1", 1, 10_000, { hash: HASH, windowMs: 2000 });
    expect(confirmed).toMatchObject({ host: "hv1", revision: 1, hash: HASH });
    expect(Date.now() - t).toBeLessThan(1000);
    const unconfirmed = await s.cp.waitForConfirmed("hv2", 1, 10_000, { hash: HASH, windowMs: 2000 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(unconfirmed).toBeInstanceOf(UnconfirmedError);
  }, 60_000);
});
