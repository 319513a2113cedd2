/**
 * netfleet-lab's command line without a lab: usage errors exit 64 with a
 * suggestion, --help and --version 0, and `status` of a lab that was never
 * built says so and exits 1 (it reads only the run dir's lab.json).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { main } from "./program.ts";
import { writeLabState } from "./state.ts";
import { buildTopology } from "./topology.ts";

const LAB_SITE = fileURLToPath(new URL("../../../inventories/lab", import.meta.url));

/** A directory of the running test's own, removed when it finishes. */
function scratch(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function run(argv: string[]) {
  const lines: string[] = [];
  const values: unknown[] = [];
  const out: string[] = [];
  const err: string[] = [];
  const errors: string[] = [];
  const code = await main(argv, { line: (t) => lines.push(t), json: (v) => values.push(v), error: (t) => errors.push(t) }, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, lines, values, errors, out: out.join(""), err: err.join("") };
}

describe("netfleet-lab", () => {
  it("refuses an unknown command or option with 64 and a suggestion", async () => {
    expect(await run(["stat"])).toMatchObject({ code: 64, err: expect.stringContaining("Did you mean status?") });
    expect(await run(["status", "--prefx", "x"])).toMatchObject({ code: 64, err: expect.stringContaining("Did you mean --prefix?") });
    expect((await run([])).code).toBe(64);
    expect((await run([])).out).toMatch(/^Usage: netfleet-lab/); // on stdout, as netfleet and netfleet-agent
    expect(await run(["help", "stat"])).toMatchObject({ code: 64, err: expect.stringContaining("unknown command 'stat'") });
    expect((await run(["status", "extra"])).code).toBe(64);
  });

  it("refuses a prefix that cannot name namespaces", async () => {
    expect(await run(["status", "--prefix", "9x"])).toMatchObject({ code: 64, err: expect.stringContaining("--prefix must be 1-6 of a-z 0-9") });
  });

  it("answers --help on every command and --version", async () => {
    for (const c of ["up", "down", "status", "check", "attack"]) expect(await run([c, "--help"])).toMatchObject({ code: 0, out: expect.stringContaining("--inventory <dir>") });
    expect(await run(["--version"])).toMatchObject({ code: 0, out: "0.1.0\n" });
    expect(await run(["rollout", "--help"])).toMatchObject({ code: 0, out: expect.stringMatching(/Usage: netfleet-lab rollout \[options\] <dir>[\s\S]*--check/) });
  });

  it("refuses rollout without a site folder (64) and without a lab (one line, nothing run)", async () => {
    expect(await run(["rollout"])).toMatchObject({ code: 64, err: expect.stringContaining("missing required argument 'dir'") });
    const runDir = scratch("nfl-");
    await expect(run(["rollout", "inventories/lab", "--prefix", "zq", "--run-dir", runDir])).rejects.toThrow(`no lab in ${runDir} (run netfleet-lab up --prefix zq --run-dir ${runDir})`);
  });

  it("refuses a site that does not load or does not fit the lab before running anything: one line, exit 2", async () => {
    // A lab.json as up writes it (the lab itself is not there: nothing may be needed of it before these refusals).
    const runDir = scratch("nfl-");
    const o = { inventoryDir: LAB_SITE, prefix: "zq", runDir };
    const topology = buildTopology(loadInventory(LAB_SITE), o);
    writeLabState(runDir, { version: 1, prefix: "zq", runDir, inventoryDir: LAB_SITE, fingerprint: topology.fingerprint, topology, pids: {}, agents: {}, updatedAt: "2026-11-30T00:00:00.000Z" });
    const before = readFileSync(join(runDir, "lab.json"), "utf8");
    const site = scratch("nfl-site-");
    cpSync(LAB_SITE, site, { recursive: true });
    writeFileSync(join(site, "networks.yaml"), readFileSync(join(site, "networks.yaml"), "utf8").replace("vlan: 1082", "vlan: 5000"));
    const bad = await run(["rollout", site, "--prefix", "zq", "--run-dir", runDir]);
    expect(bad).toMatchObject({ code: 2, lines: [], errors: [expect.stringMatching(/^netfleet-lab rollout: .*networks\.yaml:\d+:\d+: networks\.service\.vlan: /)] });
    writeFileSync(join(site, "networks.yaml"), readFileSync(join(LAB_SITE, "networks.yaml"), "utf8").replace("vlan: 1082", "vlan: 1090"));
    const reshaped = await run(["rollout", site, "--prefix", "zq", "--run-dir", runDir, "--json"]);
    expect(reshaped).toMatchObject({ code: 2, values: [{ changes: ["network service: vlan 1082 → 1090", "trunks changed"] }] });
    // the hint names the same lab: its prefix and run dir, as they are not the defaults
    expect((reshaped.values[0] as { error: string }).error).toMatch(new RegExp(`need the lab rebuilt: netfleet-lab up --inventory ${site} --prefix zq --run-dir ${runDir}$`));
    expect(readFileSync(join(runDir, "lab.json"), "utf8")).toBe(before);
  });

  it("reports a lab that was never built as down, exit 1", async () => {
    const runDir = scratch("nfl-");
    expect(await run(["status", "--prefix", "zq", "--run-dir", runDir])).toMatchObject({ code: 1, lines: [`lab zq: down (no lab.json in ${runDir})`] });
    expect(await run(["status", "--prefix", "zq", "--run-dir", runDir, "--json"])).toMatchObject({ code: 1, values: [{ up: false, prefix: "zq", runDir }] });
  });
});
