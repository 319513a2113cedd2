import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { main } from "../main.ts";
import { memoryOutput } from "../output.ts";
import { ControllerHome, acceptedEnrollmentTokens } from "../store/home.ts";
import { KeysBusyError, parseOverlap, rotateEnrollment } from "./keys.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function home(): Promise<ControllerHome> {
  const dir = await mkdtemp(join(tmpdir(), "keys-unit-"));
  dirs.push(dir);
  const h = new ControllerHome(dir);
  await h.secrets("lab");
  return h;
}

describe("netfleet keys", () => {
  it("parses overlaps and refuses anything else with one line naming --overlap", () => {
    expect(parseOverlap("90s")).toBe(90_000);
    expect(parseOverlap("15m")).toBe(900_000);
    expect(parseOverlap("24h")).toBe(86_400_000);
    expect(parseOverlap("7d")).toBe(604_800_000);
    expect(parseOverlap("0s")).toBe(0);
    for (const bad of ["", "1", "1w", "-1h", "1.5h", "366d", "h"]) expect(() => parseOverlap(bad)).toThrow(/^--overlap takes a duration like 90s/);
  });

  it("a bad --overlap is a usage error before anything is read or dialled", async () => {
    const out = memoryOutput(false);
    const code = await main(["keys", "rotate", "--overlap", "soon", "--state-dir", "/nonexistent"], out);
    expect(code).toBe(64);
    expect(out.stderr.join("\n")).toMatch(/--overlap takes a duration/);
    expect(out.stderr.join("\n")).not.toMatch(/\n\s+at /);
  });

  it("rotate-enrollment: a new secret under the same id; the old token accepted until its notAfter, then not; files stay 0600", async () => {
    const h = await home();
    const before = await h.secrets();
    const now = new Date();
    const r = await rotateEnrollment(h, { overlapMs: 3600_000, now });
    const after = await h.secrets();
    expect(r.token).toBe(after.enrollment.token);
    expect(after.enrollment.token).not.toBe(before.enrollment.token);
    expect(after.enrollment.enrollPassword).toBe(before.enrollment.enrollPassword);
    expect(after.enrollment.token.startsWith(`${before.enrollment.enrollPassword}.`)).toBe(true);
    expect(acceptedEnrollmentTokens(after, now.getTime()).map((t) => t.token)).toEqual([after.enrollment.token, before.enrollment.token]);
    expect(acceptedEnrollmentTokens(after, now.getTime() + 3600_000).map((t) => t.token)).toEqual([after.enrollment.token]);
    expect((await stat(join(h.dir, "secrets.json"))).mode & 0o777).toBe(0o600);
    // The CLI prints the token on stdout (JSON: without the previous token's secret).
    const out = memoryOutput(true);
    expect(await main(["keys", "rotate-enrollment", "--overlap", "0s", "--state-dir", h.dir, "--json"], out)).toBe(0);
    const doc = out.values[0] as { token: string; previous: unknown[] };
    expect(doc.token).toBe((await h.secrets()).enrollment.token);
    expect(JSON.stringify(doc)).not.toContain(after.enrollment.token);
    // --overlap 0s: the token replaced is not kept; the one from the first rotation still is, until its own notAfter.
    expect((await h.secrets()).enrollment.previous?.map((p) => p.token)).toEqual([before.enrollment.token]);
  });

  it("keys.lock is an flock(2): a holder (another process, or a second call at once) refuses the command, nothing changed; released on exit", async () => {
    const h = await home();
    const lock = join(h.dir, "keys.lock");
    await writeFile(lock, "", { mode: 0o600 });
    // Attack: another process holds the lock (util-linux flock(1) keeps it while its command runs).
    // Its own process group, so that the test kills flock(1) and the command it runs (which inherits the lock).
    const holder = spawn("flock", ["--exclusive", lock, "sleep", "30"], { stdio: "ignore", detached: true });
    try {
      // Until the holder has it, a run may still get the lock (and rotate): wait for the first refusal, bounded.
      let refused: unknown;
      for (let i = 0; i < 100 && !refused; i++) {
        refused = await rotateEnrollment(h, { overlapMs: 0 }).then(() => undefined, (err: unknown) => err);
        if (!refused) await new Promise((r) => setTimeout(r, 20));
      }
      expect(refused).toBeInstanceOf(KeysBusyError);
      expect(String((refused as Error).message)).toMatch(/keys\.lock: another netfleet keys command is running \(.*pid \d+/);
      const unchanged = await readFile(join(h.dir, "secrets.json"), "utf8");
      await expect(rotateEnrollment(h, { overlapMs: 0 })).rejects.toBeInstanceOf(KeysBusyError);
      expect(await readFile(join(h.dir, "secrets.json"), "utf8")).toBe(unchanged);
    } finally {
      process.kill(-holder.pid!, "SIGKILL");
      await new Promise((r) => (holder.exitCode !== null || holder.signalCode !== null ? r(undefined) : holder.once("exit", r)));
    }
    // Positive control: the holder gone (killed: the kernel drops its lock once its last process has exited), the command runs.
    let done = false;
    for (let i = 0; i < 100 && !done; i++) {
      done = await rotateEnrollment(h, { overlapMs: 0 }).then(() => true, (err: unknown) => (err instanceof KeysBusyError ? false : Promise.reject(err)));
      if (!done) await new Promise((r) => setTimeout(r, 20));
    }
    expect(done).toBe(true);
    // Two at once in one process (two open file descriptions): exactly one runs.
    const results = await Promise.allSettled([rotateEnrollment(h, { overlapMs: 3600_000 }), rotateEnrollment(h, { overlapMs: 3600_000 })]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason)).toEqual([expect.any(KeysBusyError)]);
    expect((await h.secrets()).enrollment.previous).toHaveLength(1);
    expect((await stat(lock)).mode & 0o777).toBe(0o600);
  }, 30_000); // spawns flock(1) holders: on a loaded two-core machine (the unit project runs files in parallel) 5 s is not enough
});
