import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { benchProblems, rolloutBench, type RolloutRow } from "../bench/rollout.ts";

const REPO = new URL("../..", import.meta.url).pathname;

/**
 * The benchmark is not a test: no figure is judged here. What is judged is
 * that a run is sound (benchProblems): `npm run bench -- --quick` runs (real
 * nats-server, simulated agents, and the lab parts, so root), writes its JSON
 * with the expected shape, every rollout ends in success with no failed,
 * rolled-back or unconverged host, and the no-op reconciles ran no mutating
 * command. The second row proves the check can fail: a real rollout whose
 * host's `sysctl -w` fails must come out failed, with the failed apply not
 * counted as converged and the host's reason given.
 */
describe("npm run bench -- --quick (smoke)", () => {
  it("runs, writes bench results with the expected shape, and every rollout and no-op run is sound", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nf-bench-smoke-"));
    try {
      const out = join(dir, "bench.json");
      const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(REPO, "test/bench/run.ts"), "--quick", "--out", out], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
      let stdout = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      const timer = setTimeout(() => child.kill("SIGTERM"), 170_000);
      const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
      clearTimeout(timer);
      expect(code, stderr).toBe(0);
      expect(stdout).toContain("targets");

      const r = JSON.parse(await readFile(out, "utf8")) as Record<string, unknown>;
      expect(r).toMatchObject({ version: 1, quick: true, errors: [] });
      const num = expect.any(Number);
      const rollout = r.rollout as RolloutRow[];
      expect(rollout.map((x) => x.agents)).toEqual([100, 1000]);
      for (const row of rollout) {
        expect(row).toMatchObject({ convergeMs: num, p50Ms: num, p99Ms: num, controllerRssMb: num, messagesPerHost: num });
        for (const k of ["convergeMs", "p50Ms", "p99Ms", "controllerRssMb", "messagesPerHost"] as const) expect(Number.isFinite(row[k]), k).toBe(true);
      }
      const noop = r.noop as { role: string; mutatingCommands: number }[];
      expect(noop.map((x) => x.role).sort()).toEqual(["backend", "vmhost"]);
      for (const row of noop) expect(row).toMatchObject({ wallMs: num, commands: num, mutatingCommands: num });
      expect(r.firstApply).toMatchObject({ wallMs: num, commandMs: num, overheadRatio: num });
      // Sound: every rollout succeeded, no host failed, reported a failed apply or undid the revision; no-op runs mutated nothing.
      expect(benchProblems({ rollout, noop })).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it("fails on a failed apply: a host whose sysctl -w fails makes the rollout fail, counted and explained, never converged", async () => {
    const lines: string[] = [];
    const row = await rolloutBench(12, (l) => lines.push(l), { failHosts: ["hv7"], ports: [26000, 26999], applyTimeoutMs: 30_000 });
    // Budget 0: the failed host stops the rollout, which reverts what it changed.
    expect(row.result, lines.join("\n")).toBe("failed");
    expect(row.failedReports).toBe(1);
    expect(row.failed).toBeGreaterThanOrEqual(1);
    // The failed host carries its reason: the resources that failed, as the agent reported them.
    const reasons = row.failures!.map((f) => f.reason);
    expect(reasons.some((x) => /resource\(s\) failed: sysctl\[net\.bench\.kN\]/.test(x)), reasons.join("\n")).toBe(true);
    expect(row.failures!.find((f) => /resource\(s\) failed/.test(f.reason))!.sample).toEqual(["hv7"]);
    const problems = benchProblems({ rollout: [row] });
    expect(problems).toContain("rollout of 12 agents: result failed");
    expect(problems).toContain("rollout of 12 agents: 1 hosts reported a failed apply");
    expect(problems.some((p) => /hosts failed or not converged/.test(p))).toBe(true);
    // And a no-op pass that mutates is a problem too.
    expect(benchProblems({ rollout: [], noop: [{ role: "vmhost", mutatingCommands: 2 }] })).toEqual(["no-op reconcile of a vmhost: 2 mutating commands"]);
  }, 120_000);
});
