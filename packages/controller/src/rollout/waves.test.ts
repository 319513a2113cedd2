import { describe, expect, it } from "vitest";
import { limitHosts, orderTargets, parseAmount, planWaves, resolveAmount } from "./waves.ts";

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

  it("limits to hosts matching a host, group or role pattern, and names the patterns matching none", () => {
    const inventory = {
      hosts: [
        { name: "gw1", groups: ["edge"], role: "backend" },
        { name: "hv1", groups: ["rack-a"], role: "vmhost" },
        { name: "hv12", groups: ["rack-b"], role: "vmhost" },
      ],
    };
    expect(limitHosts(inventory, ["hv?"])).toEqual({ hosts: new Set(["hv1"]), unmatched: [] });
    expect(limitHosts(inventory, ["hv*"]).hosts).toEqual(new Set(["hv1", "hv12"]));
    expect(limitHosts(inventory, ["rack-b", "backend"]).hosts).toEqual(new Set(["hv12", "gw1"]));
    expect(limitHosts(inventory, ["hv1", "db*", "!hv1"])).toEqual({ hosts: new Set(["hv1"]), unmatched: ["db*", "!hv1"] });
    expect(limitHosts(inventory, ["hv1.x"]).unmatched).toEqual(["hv1.x"]);
  });

  it("--limit patterns: only * and ? are special, brackets, braces and extglobs are literal", () => {
    const inventory = { hosts: [{ name: "hv1", groups: [], role: "vmhost" }, { name: "hv2", groups: [], role: "vmhost" }] };
    expect(limitHosts(inventory, ["hv[12]", "hv{1,2}", "+(hv)1"])).toEqual({ hosts: new Set(), unmatched: ["hv[12]", "hv{1,2}", "+(hv)1"] });
    expect(limitHosts(inventory, ["h*1", "?v2"]).hosts).toEqual(new Set(["hv1", "hv2"]));
  });
});
