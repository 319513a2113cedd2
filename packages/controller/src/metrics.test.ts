import { describe, expect, it } from "vitest";
import { ServeMetrics } from "./metrics.ts";
import type { HostStatus } from "./store/status.ts";

const none = { count: 0, last: null, changes: [], at: null };

/** A status row as readStatus builds it; `over` sets what a case is about. */
function row(host: string, over: Partial<HostStatus>): HostStatus {
  return {
    host,
    inventory: true,
    enrolled: true,
    state: "approved",
    reason: null,
    lastSeen: null,
    desired: null,
    applied: null,
    drift: false,
    summary: null,
    failures: [],
    corrective: none,
    warnings: [],
    agent: null,
    ...over,
  };
}

const at = "2026-11-30T10:00:00.000Z";
const ROWS: HostStatus[] = [
  // At the desired revision.
  row("gw1", { desired: { revision: 3, hash: "a" }, applied: { revision: 3, hash: "a", rolledBack: false, at }, summary: { ok: 5, changed: 0, failed: 0, pending: 0 }, corrective: { ...none, count: 2 } }),
  // Behind: still at revision 2.
  row("hv1", { desired: { revision: 3, hash: "b" }, applied: { revision: 2, hash: "c", rolledBack: false, at }, drift: true, summary: { ok: 4, changed: 0, failed: 0, pending: 0 } }),
  // Failed a resource at the desired revision.
  row("hv2", { desired: { revision: 3, hash: "d" }, applied: { revision: 3, hash: "d", rolledBack: false, at }, summary: { ok: 3, changed: 0, failed: 1, pending: 0 }, failures: [{ id: "sysctl[x]" }] }),
  // Rolled back (lockout).
  row("hv3", { desired: { revision: 3, hash: "e" }, applied: { revision: 3, hash: null, rolledBack: true, at }, drift: true, summary: { ok: 1, changed: 0, failed: 0, pending: 0 } }),
  row("hv4", { state: "quarantined" }),
  row("hv5", { enrolled: false, state: "unenrolled" }),
];

describe("serve's metrics (prom-client registry, rows as netfleet status reads them)", () => {
  it("rollout progress: hosts with a desired revision, at it, failed; per-host revisions; hosts by state", async () => {
    let reads = 0;
    const m = new ServeMetrics(async () => (reads++, ROWS), { defaultMetrics: false });
    const text = (await m.page()).body;
    expect(reads).toBe(1);
    for (const line of [
      "netfleet_rollout_hosts_desired 4",
      "netfleet_rollout_hosts_at_desired 2",
      "netfleet_rollout_hosts_failed 2",
      'netfleet_hosts{state="approved"} 4',
      'netfleet_hosts{state="quarantined"} 1',
      'netfleet_hosts{state="rejected"} 0',
      'netfleet_hosts{state="unenrolled"} 1',
      'netfleet_host_desired_revision{host="gw1"} 3',
      'netfleet_host_applied_revision{host="hv1"} 2',
      'netfleet_host_corrective_changes{host="gw1"} 2',
      "netfleet_status_read_errors_total 0",
      "netfleet_nats_reconnects_total 0",
      "# TYPE netfleet_rollout_hosts_at_desired gauge",
      "# TYPE netfleet_nats_reconnects_total counter",
    ]) {
      expect(text, line).toContain(`${line}\n`);
    }
    // A host without a desired revision has no revision series.
    expect(text).not.toContain('netfleet_host_desired_revision{host="hv4"}');
  });

  it("a host that leaves the rows leaves the per-host series; a failed read keeps the last values and is counted", async () => {
    let rows = ROWS;
    let fail = false;
    const m = new ServeMetrics(async () => {
      if (fail) throw new Error("no responders");
      return rows;
    }, { defaultMetrics: false });
    await m.page();
    rows = ROWS.filter((r) => r.host !== "gw1");
    expect((await m.page()).body).not.toContain('host="gw1"');
    fail = true;
    const text = (await m.page()).body;
    expect(text).toContain("netfleet_status_read_errors_total 1\n");
    expect(text).toContain("netfleet_rollout_hosts_desired 3\n");
  });

  it("concurrent scrapes share one read", async () => {
    let reads = 0;
    const m = new ServeMetrics(async () => {
      reads++;
      await new Promise((r) => setTimeout(r, 50));
      return ROWS;
    }, { defaultMetrics: false });
    await Promise.all([m.page(), m.page(), m.page()]);
    expect(reads).toBe(1);
  });
});
