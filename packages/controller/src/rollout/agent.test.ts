import { describe, expect, it } from "vitest";
import { bundleSha256 as sha256Hex, generateSigningKeys, signManifest, signTarget, type AgentRunning, type AgentTarget, type BundleManifest } from "@netfleet/shared";
import type { AgentUpgradeStore } from "../store/objects.ts";
import { runAgentRollout } from "./agent.ts";
import type { RolloutEvent } from "./events.ts";

const signing = generateSigningKeys();
const OLD = Buffer.from("old bundle");
const NEW = Buffer.from("new bundle");

/**
 * An in-memory upgrade store whose "agents" answer a target at once: on the new sha256 they run it, unless
 * `outcome(host)` says "refused" or "reverted" for it (then they stay on the old one and say so).
 */
function fakeStore(outcome: (host: string) => "ok" | "refused" | "reverted" | "silent", earlier: Map<string, AgentTarget> = new Map()) {
  const runs = new Map<string, AgentRunning>();
  const targets: AgentTarget[] = [];
  const cleared: string[] = [];
  const current = new Map(earlier);
  const bundles: BundleManifest[] = [];
  const at = () => new Date().toISOString();
  for (const h of ["a", "b", "c", "d"]) runs.set(h, { protocol: "1.1", kind: "agent-running", site: "lab", host: h, version: "1", sha256: sha256Hex(OLD), size: OLD.length, state: "running", at: at() });
  const store = {
    putBundle: async (_code: Uint8Array, m: BundleManifest) => void bundles.push(m),
    target: async (h: string) => current.get(h),
    clearTarget: async (h: string) => {
      cleared.push(h);
      current.delete(h);
    },
    setTarget: async (t: AgentTarget) => {
      targets.push(t);
      current.set(t.host, t);
      const cur = runs.get(t.host)!;
      const to = { version: t.manifest.version, sha256: t.manifest.sha256, revision: t.revision };
      const o = t.manifest.sha256 === sha256Hex(OLD) ? "back" : outcome(t.host);
      if (o === "silent") return 1;
      if (o === "back" || o === "ok") runs.set(t.host, { ...cur, version: t.manifest.version, sha256: t.manifest.sha256, state: "running", target: to, at: at() });
      else runs.set(t.host, { ...cur, state: o, target: to, reason: `${o} on purpose`, at: at() });
      return 1;
    },
    running: async (h: string) => runs.get(h),
    waitRunning: async (h: string, done: (r: AgentRunning) => boolean) => {
      const r = runs.get(h);
      return { report: r, timedOut: !(r && done(r)) };
    },
  };
  return { store: store as unknown as AgentUpgradeStore, runs, targets, bundles, cleared };
}

const lock = {
  acquire: async (owner: string) => ({ owner, acquiredAt: "", revision: 1 }),
  renew: async (l: never) => l,
  release: async () => {},
};

/** Every host's earlier target: the old bundle, as the controller signed it before. */
const earlierOld = () => new Map(["a", "b", "c", "d"].map((h) => [h, signTarget(h, signManifest("lab", OLD, "1", signing.privateKeyPem), 30, signing.privateKeyPem)]));

async function roll(outcome: (host: string) => "ok" | "refused" | "reverted" | "silent", maxFail = 0, earlier = earlierOld()) {
  const f = fakeStore(outcome, earlier);
  const events: RolloutEvent[] = [];
  const out = await runAgentRollout({ site: "lab", upgrades: f.store, lock, signing }, ["d", "c", "b", "a"].map((host) => ({ host, role: "vmhost" })), { code: NEW, version: "2" }, { batch: { count: 2 }, maxFail: { count: maxFail } }, (e) => events.push(e));
  return { ...f, out, events };
}

describe("runAgentRollout (in-memory agents)", () => {
  it("positive control: canary then waves of --batch, every host on the new version", async () => {
    const { out, events, runs, bundles } = await roll(() => "ok");
    expect(out.result).toBe("success");
    expect(events.filter((e) => e.event === "wave").map((e) => (e as { hosts: string[] }).hosts)).toEqual([["a"], ["b", "c"], ["d"]]);
    expect([...runs.values()].every((r) => r.version === "2")).toBe(true);
    expect(bundles[0]).toMatchObject({ version: "2", sha256: sha256Hex(NEW), size: NEW.length, object: `agent-2-${sha256Hex(NEW).slice(0, 12)}.mjs` });
  });

  it("a refused canary stops the rollout: no other host gets a target, the canary is set back to its old bundle", async () => {
    const { out, events, targets, runs } = await roll((h) => (h === "a" ? "refused" : "ok"));
    expect(out.result).toBe("failed");
    expect(events).toContainEqual(expect.objectContaining({ event: "budget-exceeded", canary: true }));
    expect(events.find((e) => e.event === "host-done")).toMatchObject({ host: "a", ok: false, error: "refused: refused on purpose" });
    expect(new Set(targets.map((t) => t.host))).toEqual(new Set(["a"]));
    // Back to its earlier target: the old bundle's manifest as the controller signed it.
    expect(targets.at(-1)!.manifest).toMatchObject({ version: "1", sha256: sha256Hex(OLD), size: OLD.length });
    expect(runs.get("a")).toMatchObject({ version: "1", state: "running" });
    expect(events).toContainEqual(expect.objectContaining({ event: "host-reverted", host: "a", ok: true }));
  });

  it("over the budget in a wave: stops, and every host it touched goes back to the old bundle", async () => {
    const { out, targets, runs } = await roll((h) => (h === "b" ? "reverted" : "ok"));
    expect(out.result).toBe("failed");
    expect(targets.some((t) => t.host === "d")).toBe(false);
    for (const h of ["a", "b", "c"]) expect(runs.get(h)).toMatchObject({ version: "1", sha256: sha256Hex(OLD) });
    expect(runs.get("d")).toMatchObject({ version: "1" });
  });

  it("within the budget: partial, the failed host reported, the rest upgraded", async () => {
    const { out, runs } = await roll((h) => (h === "c" ? "refused" : "ok"), 1);
    expect(out.result).toBe("partial");
    expect(runs.get("c")).toMatchObject({ version: "1", state: "refused" });
    for (const h of ["a", "b", "d"]) expect(runs.get(h)!.version).toBe("2");
  });

  it("review F6: without an earlier target nothing a host reported is signed; the target is withdrawn, a host that never left its bundle counts as back", async () => {
    const evil = "e".repeat(64);
    const f = fakeStore((h) => (h === "a" ? "refused" : "ok"));
    // A compromised host claims to run a bundle of its choosing before the rollout.
    f.runs.set("a", { ...f.runs.get("a")!, version: "6.6.6", sha256: evil, size: 666 });
    const events: RolloutEvent[] = [];
    const out = await runAgentRollout({ site: "lab", upgrades: f.store, lock, signing }, ["a", "b"].map((host) => ({ host, role: "vmhost" })), { code: NEW, version: "2" }, {}, (e) => events.push(e));
    expect(out.result).toBe("failed");
    expect(f.targets.every((t) => t.manifest.sha256 === sha256Hex(NEW))).toBe(true);
    expect(f.targets.some((t) => t.manifest.sha256 === evil || t.manifest.version === "6.6.6")).toBe(false);
    expect(f.cleared).toEqual(["a"]);
    expect(events).toContainEqual(expect.objectContaining({ event: "host-reverted", host: "a", ok: true }));
  });

  it("positive control of F6: a wave host with an earlier target goes back to that target's own signed manifest", async () => {
    const { targets } = await roll((h) => (h === "c" ? "refused" : "ok"));
    const back = targets.filter((t) => t.manifest.sha256 === sha256Hex(OLD));
    expect(back.map((t) => t.host).sort()).toEqual(["a", "b", "c"]);
    const earlier = earlierOld().get("a")!.manifest;
    for (const t of back) expect(t.manifest).toMatchObject({ version: "1", size: OLD.length, signature: expect.any(String) });
    expect(back.find((t) => t.host === "a")!.manifest.keyId).toBe(earlier.keyId);
  });

  it("a canary that never reports fails at the host timeout, and the rollout stops there", async () => {
    const { out, events, targets } = await roll((h) => (h === "a" ? "silent" : "ok"));
    expect(out.result).toBe("failed");
    expect(events.find((e) => e.event === "host-done")).toMatchObject({ host: "a", ok: false, error: expect.stringMatching(/^did not report version 2 within 180s \(last: 1 running\)$/) });
    expect(new Set(targets.map((t) => t.host))).toEqual(new Set(["a"]));
  });

  it("hosts already on the bundle are unchanged and get no target", async () => {
    const f = fakeStore(() => "ok");
    for (const h of ["a", "b"]) f.runs.set(h, { ...f.runs.get(h)!, version: "2", sha256: sha256Hex(NEW) });
    const events: RolloutEvent[] = [];
    const out = await runAgentRollout({ site: "lab", upgrades: f.store, lock, signing }, ["a", "b", "c"].map((host) => ({ host, role: "vmhost" })), { code: NEW, version: "2" }, {}, (e) => events.push(e));
    expect(out.result).toBe("success");
    expect(f.targets.map((t) => t.host)).toEqual(["c"]);
    expect(events.find((e) => e.event === "rollout")).toMatchObject({ unchanged: ["a", "b"] });
  });
});
