import { describe, expect, it } from "vitest";
import { sealAssignment } from "@netfleet/shared";
import { diffAssignments, orderTargets, parseAmount, planWaves, resolveAmount } from "./rollout.ts";

const doc = (resources: { name: string; value: string }[]) =>
  sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "lab", host: "hv1", role: "vmhost", resources: resources.map((r) => ({ kind: "sysctl" as const, ...r })) });

describe("rollout planning", () => {
  it("parses and resolves amounts", () => {
    expect(parseAmount("3", "--batch")).toEqual({ count: 3 });
    expect(parseAmount("25%", "--batch")).toEqual({ percent: 25 });
    expect(() => parseAmount("x", "--batch")).toThrow(/--batch takes/);
    expect(() => parseAmount("120%", "--max-fail")).toThrow(/at most 100%/);
    expect(resolveAmount({ percent: 25 }, 10, 1)).toBe(2);
    expect(resolveAmount({ percent: 25 }, 3, 1)).toBe(1);
    expect(resolveAmount({ percent: 10 }, 5, 0)).toBe(0);
    expect(resolveAmount({ count: 4 }, 2, 0)).toBe(4);
  });

  it("orders backends first, then a canary and waves that never mix roles", () => {
    const ordered = orderTargets([
      { host: "hv2", role: "vmhost" },
      { host: "gw2", role: "backend" },
      { host: "hv1", role: "vmhost" },
      { host: "gw1", role: "backend" },
      { host: "hv3", role: "vmhost" },
    ]);
    expect(ordered.map((t) => t.host)).toEqual(["gw1", "gw2", "hv1", "hv2", "hv3"]);
    expect(planWaves(ordered, 2)).toEqual([["gw1"], ["gw2"], ["hv1", "hv2"], ["hv3"]]);
    expect(planWaves(ordered.slice(2), 5)).toEqual([["hv1"], ["hv2", "hv3"]]);
    expect(planWaves([], 2)).toEqual([]);
  });

  it("diffs assignments per resource and field", () => {
    const a = doc([{ name: "a.b", value: "1" }, { name: "c.d", value: "1" }]);
    const b = doc([{ name: "a.b", value: "2" }, { name: "e.f", value: "1" }]);
    expect(diffAssignments(a, b)).toEqual({ added: ["sysctl[e.f]"], removed: ["sysctl[c.d]"], changed: [{ id: "sysctl[a.b]", fields: ["value"] }] });
    expect(diffAssignments(undefined, a).added).toHaveLength(2);
    expect(diffAssignments(a, a)).toEqual({ added: [], removed: [], changed: [] });
  });
});
