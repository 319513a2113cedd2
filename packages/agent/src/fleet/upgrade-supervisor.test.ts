import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fileSha256, readMarker, upgradePaths, writeMarker } from "./upgrade-files.ts";
import { findOnPath, supervise } from "./upgrade-supervisor.ts";

/**
 * The supervisor with stand-in bundles (tiny scripts run as `node P config-run FILE`, as it runs the real one):
 * it must put the previous bundle back when the new one exits before reporting, or runs without reporting
 * past its trial; and keep a new one that commits. Each "old" script exits 0 after a moment, which ends the run.
 */
const OLD = `setTimeout(() => process.exit(0), 300);\n`;
const CRASH = `process.exit(7);\n`;
const HANG = `setInterval(() => {}, 1000); process.on("SIGTERM", () => process.exit(0));\n`;
const COMMIT = `import { readFileSync, writeFileSync, renameSync } from "node:fs";
const marker = process.argv[1] + ".upgrade.json";
const m = JSON.parse(readFileSync(marker, "utf8"));
writeFileSync(marker + ".t", JSON.stringify({ ...m, state: "committed" }));
renameSync(marker + ".t", marker);
setTimeout(() => process.exit(0), 300);
`;

let dir = "";
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function run(next: string, trialS = 20): Promise<{ code: number; paths: ReturnType<typeof upgradePaths>; events: Record<string, unknown>[] }> {
  dir = mkdtempSync(join(tmpdir(), "upgrade-supervisor-"));
  const paths = upgradePaths(join(dir, "agent.mjs"));
  writeFileSync(paths.current, OLD);
  writeFileSync(paths.next, next);
  writeFileSync(join(dir, "agent.json"), "{}");
  await writeMarker(paths, { state: "staged", from: { version: "1", sha256: fileSha256(paths.current)! }, to: { version: "2", sha256: fileSha256(paths.next)!, revision: 1 }, trialS });
  const events: Record<string, unknown>[] = [];
  const code = await supervise({ bundle: paths.current, config: join(dir, "agent.json"), pollMs: 50, log: (e) => events.push(e) });
  return { code, paths, events };
}

describe("upgrade supervisor", () => {
  it("puts the previous bundle back when the new one exits before it reports", async () => {
    const { code, paths, events } = await run(CRASH);
    expect(code).toBe(0);
    expect(readFileSync(paths.current, "utf8")).toBe(OLD);
    expect(readFileSync(paths.failed, "utf8")).toBe(CRASH);
    expect(readMarker(paths)).toMatchObject({ state: "reverted", reason: expect.stringMatching(/^version 2 exited with code 7 \d+s after its start, before it reported$/) });
    expect(events.map((e) => e.event)).toEqual(["upgrade-trying", "upgrade-reverted"]);
  }, 20_000);

  it("stops and puts back a new bundle that runs but does not report within its trial", async () => {
    const t0 = Date.now();
    const { code, paths } = await run(HANG, 1);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(readFileSync(paths.current, "utf8")).toBe(OLD);
    expect(readMarker(paths)).toMatchObject({ state: "reverted", reason: "version 2 did not report within 1s of its start" });
  }, 20_000);

  it("keeps a new bundle that commits, the previous one kept beside it (positive control)", async () => {
    const { code, paths } = await run(COMMIT);
    expect(code).toBe(0);
    expect(readFileSync(paths.current, "utf8")).toBe(COMMIT);
    expect(readFileSync(paths.prev, "utf8")).toBe(OLD);
    expect(readMarker(paths)?.state).toBe("committed");
  }, 20_000);

  it("its agent dies with it when the supervisor is SIGKILLed; started without setpriv it would outlive it (control)", async () => {
    const agentPids: number[] = [];
    const supervisors: number[] = [];
    try {
      for (const dieWithParent of [true, false]) {
        dir = mkdtempSync(join(tmpdir(), "upgrade-supervisor-kill-"));
        const bundle = join(dir, "agent.mjs");
        const pidFile = join(dir, "agent.pid");
        // The stand-in agent: says its pid, then runs until killed.
        writeFileSync(bundle, `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(pidFile)}, String(process.pid));\nsetInterval(() => {}, 1000);\n`);
        writeFileSync(join(dir, "agent.json"), "{}");
        // The supervisor in its own process (this file's module, run by the same Node), so that it can be SIGKILLed.
        const script = `import { supervise } from ${JSON.stringify(new URL("./upgrade-supervisor.ts", import.meta.url).href)};
process.exitCode = await supervise({ bundle: ${JSON.stringify(bundle)}, config: ${JSON.stringify(join(dir, "agent.json"))}, dieWithParent: ${dieWithParent} });`;
        const sup = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] });
        supervisors.push(sup.pid!);
        let stderr = "";
        sup.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
        const exited = new Promise((r) => sup.once("exit", r));
        await until(() => existsSync(pidFile) && readFileSync(pidFile, "utf8") !== "", () => `the agent did not start under the supervisor: ${stderr}`, 10_000);
        const agent = Number(readFileSync(pidFile, "utf8"));
        agentPids.push(agent);
        // At the target: the agent is the supervisor's own child (setpriv exec'd node: same pid), and it runs.
        expect(readFileSync(`/proc/${agent}/status`, "utf8")).toMatch(new RegExp(`\\nPPid:\\s+${sup.pid}\\n`));
        expect(running(agent)).toBe(true);
        sup.kill("SIGKILL");
        await exited;
        if (dieWithParent) {
          const t0 = Date.now();
          await until(() => !running(agent), `agent pid ${agent} outlives its SIGKILLed supervisor`, 2000);
          console.log(`agent gone ${Date.now() - t0} ms after its supervisor's SIGKILL was reaped`);
        } else {
          await new Promise((r) => setTimeout(r, 500));
          expect(running(agent)).toBe(true); // the orphan the pdeath signal prevents
          process.kill(agent, "SIGKILL");
          await until(() => !running(agent), `orphan pid ${agent} dies`, 5000);
        }
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      // Whatever still runs of ours, by pid, and only if it still is ours (its command line names our temp dir or this module).
      for (const pid of [...agentPids, ...supervisors]) if (running(pid) && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("upgrade-supervisor")) process.kill(pid, "SIGKILL");
    }
  }, 30_000);

  it("finds setpriv on PATH; an unknown name or a relative directory is not found", () => {
    expect(findOnPath("sh", "/nonexistent:/bin:/usr/bin")).toMatch(/^\/(usr\/)?bin\/sh$/);
    expect(findOnPath("no-such-tool-netfleet", "/bin:/usr/bin")).toBeUndefined();
    expect(findOnPath("sh", "bin:.")).toBeUndefined();
  });
});

/** The process exists and is not a zombie (proc(5) stat field 3: a killed orphan waits in Z until init reaps it). */
function running(pid: number): boolean {
  let stat = "";
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

/** Polls `condition` every 20 ms; throws `message` after `timeoutMs`. */
async function until(condition: () => boolean, message: string | (() => string), timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(typeof message === "string" ? message : message());
    await new Promise((r) => setTimeout(r, 20));
  }
}
