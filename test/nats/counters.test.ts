/**
 * Counters over a real nats-server (issue 17 point 5): `netfleet status`
 * asks each approved agent for its counters summary on its show subject
 * (scope `counters`, nats/show.ts countersSource); the agent (FleetMember,
 * its own NATS user) reads its host, here replayed from captures of a real
 * OVS (show/__fixtures__/cntcap: both bonds up; cntcap-down: a member of
 * each down), and answers against its earlier read.
 * Ports 24480 (client) and 24680 (the server's monitoring port).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { observeHost } from "@netfleet/agent";
import { loadCapture } from "../../packages/agent/src/show/fixtures.ts";
import { countersSource } from "../../packages/controller/src/nats/show.ts";
import { SITE, eventually, inventoryHost, startAgent, startSite, type Site, type TestAgent } from "./harness.ts";

const up = loadCapture("cntcap");
const down = loadCapture("cntcap-down");

describe("counters in status over NATS", () => {
  let site: Site;
  let hv1: TestAgent;
  // What hv1's host looks like now: the capture with both bonds up, then the one with a member of each down.
  let now = up;

  beforeAll(async () => {
    site = await startSite({ basePort: 24480, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    hv1 = startAgent(site, { hostname: "hv1", onShow: () => observeHost({ host: "hv1", runner: now.runner, tools: now.tools, files: now.files }) });
    await hv1.started;
    await eventually(async () => (await site.cp.registry.get("hv1"))?.state === "approved", "hv1 approved");
  }, 60_000);

  afterAll(async () => {
    await hv1?.client.stop();
    await site?.close();
  });

  it("the agent answers with its summary against its earlier read; a host whose agent is not connected has none, at once", async () => {
    const counters = countersSource(site.cp.nc, SITE);
    const first = await counters("hv1");
    expect(first).toMatchObject({ interfaces: 13, rising: [], bonds: [{ name: "bond0", membersDown: [] }, { name: "bond1", membersDown: [] }] });
    expect(first!.sinceS).toBeUndefined();
    now = down;
    const second = await counters("hv1");
    // Compared against the first read (observeHost stamps each read with the wall clock: seconds apart here).
    expect(second!.sinceS).toBeGreaterThanOrEqual(0);
    expect(second!.bonds.map((b) => [b.name, b.membersDown])).toEqual([
      ["bond0", ["a2"]],
      ["bond1", ["b2"]],
    ]);
    const t = Date.now();
    expect(await counters("hv2")).toBeUndefined();
    expect(Date.now() - t).toBeLessThan(2000);
  });

  it("netfleet status: the row carries the summary, and a warning per bond with a member down", async () => {
    now = down;
    const rows = await site.cp.status({ counters: true });
    // Without asking (serve's metrics, the dashboard): no counters, no request.
    expect((await site.cp.status()).find((r) => r.host === "hv1")!.counters ?? null).toBeNull();
    const row = rows.find((r) => r.host === "hv1")!;
    expect(row.counters?.bonds.map((b) => b.membersDown)).toEqual([["a2"], ["b2"]]);
    expect(row.warnings.filter((w) => w.id === "counters-bond")).toEqual([
      { id: "counters-bond", message: "bond br-a/bond0: member a2 down, 1 of 2 up" },
      { id: "counters-bond", message: "bond br-b/bond1: member b2 down, 1 of 2 up" },
    ]);
    // hv2 never enrolled: not asked.
    expect(rows.find((r) => r.host === "hv2")!.counters ?? null).toBeNull();
  });
});
