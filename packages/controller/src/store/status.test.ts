import { describe, expect, it } from "vitest";
import { NO_CORRECTIVE } from "./corrective.ts";
import { hostHealth, statusExitCode, STATUS_EXIT, type HostStatus } from "./status.ts";

const NOW = Date.parse("2026-11-30T10:00:00Z");
const at = (secondsAgo: number) => new Date(NOW - secondsAgo * 1000).toISOString();
/** A status row as readStatus makes it: approved, seen 5 s ago, revision 3 desired and applied, nothing failed. */
function row(o: Partial<HostStatus> = {}): HostStatus {
  return {
    host: "hv1",
    inventory: true,
    enrolled: true,
    state: "approved",
    reason: null,
    lastSeen: at(5),
    desired: { revision: 3, hash: "h3" },
    applied: { revision: 3, hash: "h3", rolledBack: false, at: at(60) },
    drift: false,
    summary: { ok: 4, changed: 0, failed: 0, pending: 0 },
    failures: [],
    corrective: NO_CORRECTIVE,
    warnings: [],
    agent: null,
    ...o,
  };
}

describe("netfleet status health and exit code", () => {
  it("judges each row", () => {
    const health = (o: Partial<HostStatus>) => hostHealth(row(o), NOW, 90_000);
    expect(health({})).toBe("converged");
    expect(health({ lastSeen: at(91) })).toBe("unreachable");
    expect(health({ lastSeen: null })).toBe("unreachable");
    expect(health({ enrolled: false, state: "unenrolled", lastSeen: null, desired: null, applied: null })).toBe("unreachable");
    expect(health({ state: "quarantined" })).toBe("not-approved");
    expect(health({ state: "rejected" })).toBe("not-approved");
    expect(health({ inventory: false, state: "rejected" })).toBe("ignored");
    expect(health({ drift: true, desired: { revision: 4, hash: "h4" } })).toBe("drift");
    expect(health({ desired: null, applied: null })).toBe("drift");
    expect(health({ applied: { revision: 3, hash: "h3", rolledBack: true, at: at(10) } })).toBe("drift");
    expect(health({ failures: [{ id: "sysctl[x]", comment: "denied" }], summary: { ok: 3, changed: 0, failed: 1, pending: 0 } })).toBe("failed");
    // Unreachable is judged first: a silent host's old report says nothing about now.
    expect(health({ lastSeen: at(500), failures: [{ id: "sysctl[x]" }] })).toBe("unreachable");
  });

  it("exits with the worst: unreachable 2 over drift/failed/not-approved 1 over converged 0; ignored rows do not count", () => {
    expect(statusExitCode([])).toBe(STATUS_EXIT.converged);
    expect(statusExitCode(["converged", "ignored"])).toBe(0);
    expect(statusExitCode(["converged", "drift"])).toBe(1);
    expect(statusExitCode(["failed", "converged"])).toBe(1);
    expect(statusExitCode(["not-approved"])).toBe(1);
    expect(statusExitCode(["failed", "unreachable", "drift"])).toBe(2);
  });
});
