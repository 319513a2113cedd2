import { describe, expect, it } from "vitest";
import { limitHosts, orderTargets, parseAmount, parseMaxPer, planWaves, resolveAmount, type WaveHost } from "./waves.ts";

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
    // "!" excludes now (select/limit.ts): hv1 minus hv1 is nothing; db* is named as matching no host.
    expect(limitHosts(inventory, ["hv1", "db*", "!hv1"])).toEqual({ hosts: new Set(), unmatched: ["db*"] });
    expect(limitHosts(inventory, ["!hv1"]).hosts).toEqual(new Set(["gw1", "hv12"]));
    expect(limitHosts(inventory, ["hv1.x"]).unmatched).toEqual(["hv1.x"]);
  });

  it("--limit patterns: only * and ? are special, brackets, braces and extglobs are literal", () => {
    const inventory = { hosts: [{ name: "hv1", groups: [], role: "vmhost" }, { name: "hv2", groups: [], role: "vmhost" }] };
    expect(limitHosts(inventory, ["hv[12]", "hv{1}", "+(hv)1"])).toEqual({ hosts: new Set(), unmatched: ["hv[12]", "hv{1}", "+(hv)1"] });
    expect(limitHosts(inventory, ["h*1", "?v2"]).hosts).toEqual(new Set(["hv1", "hv2"]));
  });

  it("--max-per rack=1: never two hosts of one rack in a wave; the order kept as far as the limit allows", () => {
    const rack = (host: string, r: string) => ({ host, role: "vmhost", labels: { rack: r, room: "1" } as Record<string, string> });
    const ordered = [rack("hv1", "a"), rack("hv2", "a"), rack("hv3", "a"), rack("hv4", "b"), rack("hv5", "b"), rack("hv6", "c")];
    const maxPer = parseMaxPer("rack=1");
    expect(maxPer).toEqual({ key: "rack", count: 1 });
    const waves = planWaves(ordered, 3, { maxPer });
    // Canary hv1 (rack a); then hv2 (a), hv4 (b), hv6 (c); then hv3 (a), hv5 (b).
    expect(waves).toEqual([["hv1"], ["hv2", "hv4", "hv6"], ["hv3", "hv5"]]);
    for (const wave of waves) {
      const racks = wave.map((h) => ordered.find((t) => t.host === h)!.labels.rack);
      expect(new Set(racks).size).toBe(racks.length);
    }
    // Every host exactly once.
    expect(waves.flat().sort()).toEqual(ordered.map((t) => t.host).sort());
    // rack=2 and a batch of 2.
    expect(planWaves(ordered, 2, { maxPer: parseMaxPer("rack=2") })).toEqual([["hv1"], ["hv2", "hv3"], ["hv4", "hv5"], ["hv6"]]);
    // Without the option: the plain batches.
    expect(planWaves(ordered, 3)).toEqual([["hv1"], ["hv2", "hv3", "hv4"], ["hv5", "hv6"]]);
  });

  it("--max-per: hosts without the label share one value; roles still never mix; a label every host shares gives waves of N", () => {
    const ordered: WaveHost[] = [
      { host: "gw1", role: "backend", labels: { rack: "a" } },
      { host: "gw2", role: "backend", labels: { rack: "a" } },
      { host: "hv1", role: "vmhost", labels: { rack: "a" } },
      { host: "hv2", role: "vmhost", labels: {} },
      { host: "hv3", role: "vmhost" },
      { host: "hv4", role: "vmhost", labels: { rack: "b" } },
    ];
    expect(planWaves(ordered, 10, { maxPer: { key: "rack", count: 1 } })).toEqual([["gw1"], ["gw2"], ["hv1", "hv2", "hv4"], ["hv3"]]);
    const same = Array.from({ length: 7 }, (_, i) => ({ host: `hv${i}`, role: "vmhost", labels: { room: "x" } }));
    expect(planWaves(same, 100, { maxPer: { key: "room", count: 3 } }).map((w) => w.length)).toEqual([1, 3, 3]);
  });

  it("--max-per at fleet scale plans 5000 hosts in 50 racks quickly, each wave within the limit", () => {
    const ordered = Array.from({ length: 5000 }, (_, i) => ({ host: `hv${String(i).padStart(4, "0")}`, role: "vmhost", labels: { rack: `r${i % 50}` } }));
    const started = performance.now();
    const waves = planWaves(ordered, 100, { maxPer: { key: "rack", count: 2 } });
    expect(performance.now() - started).toBeLessThan(1000);
    expect(waves.flat().length).toBe(5000);
    for (const w of waves) expect(w.length).toBeLessThanOrEqual(100);
    expect(waves.length).toBe(1 + Math.ceil(4999 / 100));
  });

  it("parses --max-per LABEL=N and refuses anything else, naming the form", () => {
    expect(parseMaxPer("room.b=3")).toEqual({ key: "room.b", count: 3 });
    for (const bad of ["rack", "rack=0", "rack=x", "=1", "Rack=1", "rack=1=2"]) expect(() => parseMaxPer(bad)).toThrow(/--max-per takes LABEL=N/);
  });
});
