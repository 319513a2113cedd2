import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const REPO = new URL("../..", import.meta.url).pathname;

/**
 * The benchmark is not a test: this only checks that `npm run bench -- --quick`
 * runs (real nats-server, simulated agents, and the lab parts, so root) and
 * writes its JSON with the expected shape. No figure is judged here.
 */
describe("npm run bench -- --quick (smoke)", () => {
  it("runs and writes bench results with the expected shape", async () => {
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
      const rollout = r.rollout as Record<string, unknown>[];
      expect(rollout.map((x) => x.agents)).toEqual([100, 1000]);
      for (const row of rollout) {
        expect(row).toMatchObject({ convergeMs: num, p50Ms: num, p99Ms: num, controllerRssMb: num, messagesPerHost: num });
        for (const k of ["convergeMs", "p50Ms", "p99Ms", "controllerRssMb", "messagesPerHost"]) expect(Number.isFinite(row[k]), k).toBe(true);
      }
      const noop = r.noop as Record<string, unknown>[];
      expect(noop.map((x) => x.role).sort()).toEqual(["backend", "vmhost"]);
      for (const row of noop) expect(row).toMatchObject({ wallMs: num, commands: num, mutatingCommands: num });
      expect(r.firstApply).toMatchObject({ wallMs: num, commandMs: num, overheadRatio: num });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
