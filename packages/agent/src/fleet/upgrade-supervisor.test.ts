import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fileSha256, readMarker, upgradePaths, writeMarker } from "./upgrade-files.ts";
import { supervise } from "./upgrade-supervisor.ts";

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
});
