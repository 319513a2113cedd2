import { describe, expect, it } from "vitest";
import { sealAssignment, type Report } from "@netfleet/shared";
import { diffAssignments, hostDiffStatus, verdict } from "./diff.ts";

const doc = (resources: { name: string; value: string }[]) =>
  sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "lab", host: "hv1", role: "vmhost", resources: resources.map((r) => ({ kind: "sysctl" as const, ...r })) });

const report = (over: Partial<Report>): Report => ({
  kind: "report",
  site: "lab",
  host: "hv1",
  revision: 4,
  hash: "a".repeat(64),
  rolledBack: false,
  summary: { ok: 2, changed: 0, failed: 0, pending: 0 },
  results: [],
  at: "2026-01-01T00:00:00.000Z",
  ...over,
});

describe("rollout diff", () => {
  it("diffs assignments per resource and field", () => {
    const a = doc([{ name: "a.b", value: "1" }, { name: "c.d", value: "1" }]);
    const b = doc([{ name: "a.b", value: "2" }, { name: "e.f", value: "1" }]);
    expect(diffAssignments(a, b)).toEqual({ added: ["sysctl[e.f]"], removed: ["sysctl[c.d]"], changed: [{ id: "sysctl[a.b]", fields: ["value"] }] });
    expect(diffAssignments(undefined, a).added).toHaveLength(2);
    expect(diffAssignments(a, a)).toEqual({ added: [], removed: [], changed: [] });
  });

  it("tells new, changed, unconverged and unchanged hosts apart", () => {
    const h = "a".repeat(64);
    const desired = { revision: 4, assignment: { hash: h } };
    expect(hostDiffStatus(undefined, undefined, h)).toBe("new");
    expect(hostDiffStatus(desired, report({}), "b".repeat(64))).toBe("changed");
    expect(hostDiffStatus(desired, undefined, h)).toBe("unconverged");
    expect(hostDiffStatus(desired, report({ revision: 3 }), h)).toBe("unconverged");
    expect(hostDiffStatus(desired, report({ summary: { ok: 1, changed: 0, failed: 1, pending: 0 } }), h)).toBe("unconverged");
    expect(hostDiffStatus(desired, report({}), h)).toBe("unchanged");
  });

  it("judges a report against the published revision and document", () => {
    const h = "a".repeat(64);
    expect(verdict(report({}), 4, h)).toBeUndefined();
    expect(verdict(report({ rolledBack: true, rolledBackRevision: 4, revision: 3 }), 4, h)).toMatch(/undid revision 4/);
    expect(verdict(report({ revision: 5 }), 4, h)).toMatch(/reports revision 5, not 4/);
    expect(verdict(report({ hash: "b".repeat(64) }), 4, h)).toMatch(/reports assignment b{12}, not a{12}/);
    const failed = report({ summary: { ok: 0, changed: 0, failed: 6, pending: 0 }, results: [1, 2, 3, 4, 5, 6].map((i) => ({ id: `sysctl[x${i}]`, result: false })) });
    expect(verdict(failed, 4, h)).toBe("6 resource(s) failed: sysctl[x1], sysctl[x2], sysctl[x3], sysctl[x4], sysctl[x5], ...");
  });
});
