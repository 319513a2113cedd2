/**
 * The units as shipped (packaging/systemd), checked by systemd itself:
 * `systemd-analyze verify` (systemd-analyze(1): unknown settings, bad values,
 * missing binaries, broken dependencies) and `systemd-analyze security
 * --offline=yes` (the exposure score of the sandbox, 0 best, 10 worst).
 * The agent's unit is the text layout.ts renders (bootstrap writes the same);
 * the shipped file must not drift from it.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REMOTE, renderUnit } from "../../packages/controller/src/bootstrap/layout.ts";
import { PACKAGING } from "./world.ts";

const dir = mkdtempSync(join(tmpdir(), "sysd-verify-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** systemd-analyze ARGS: exit code and everything it printed (stdout, then stderr, where verify warns). */
function analyze(args: string[]): { code: number; out: string } {
  const r = spawnSync("systemd-analyze", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** A unit file `name` in our temp dir (verify wants the unit's own name). */
function unitFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/**
 * The serve unit as shipped, with what only a controller host has put elsewhere: its
 * ExecStart binary (verify checks that it is executable) and its env file.
 */
function serveForVerify(text: string): string {
  const env = join(dir, "serve.env");
  writeFileSync(env, readFileSync(join(PACKAGING, "serve.env")));
  return text.replace("ExecStart=/usr/local/bin/netfleet ", `ExecStart=${process.execPath} `).replace(/^EnvironmentFile=.*$/m, `EnvironmentFile=${env}`);
}

const exposure = (out: string) => Number(/Overall exposure level for \S+: ([\d.]+)/.exec(out)?.[1]);

describe("the shipped systemd units", () => {
  it("packaging/systemd/netfleet-agent.service is what bootstrap writes for a host given our Node (layout.ts renders it)", () => {
    const shipped = readFileSync(join(PACKAGING, "netfleet-agent.service"), "utf8");
    expect(shipped, "regenerate: sh scripts/node.sh packages/controller/src/bootstrap/layout.ts agent > packaging/systemd/netfleet-agent.service").toBe(renderUnit(REMOTE.node));
  });

  it("systemd-analyze verify passes both units without a warning; a misspelt setting or value is reported (the check is live)", () => {
    const agent = unitFile("netfleet-agent.service", renderUnit(process.execPath));
    const serve = unitFile("netfleet-serve.service", serveForVerify(readFileSync(join(PACKAGING, "netfleet-serve.service"), "utf8")));
    for (const f of [agent, serve]) {
      const r = analyze(["verify", f]);
      expect(r, f).toEqual({ code: 0, out: "" });
    }
    const typo = unitFile("netfleet-typo.service", renderUnit(process.execPath).replace(/^ProtectSystem=strict$/m, "ProtectSystem=strictly"));
    // verify exits 0 on a setting it ignores, and says so: hence "no output" above.
    expect(analyze(["verify", typo]).out).toMatch(/Failed to parse protect system value, ignoring: strictly/);
    const unknown = unitFile("netfleet-unknown.service", renderUnit(process.execPath).replace(/^NoNewPrivileges=yes$/m, "NoNewPrivilege=yes"));
    expect(analyze(["verify", unknown]).out).toMatch(/Unknown key 'NoNewPrivilege'/);
    const missing = unitFile("netfleet-missing.service", renderUnit("/nonexistent/node"));
    expect(analyze(["verify", missing])).toMatchObject({ code: 1, out: expect.stringMatching(/\/nonexistent\/node is not executable/) });
  });

  it("systemd-analyze security rates the agent's sandbox at most 4.0 and serve's at most 2.0 (of 10)", () => {
    const agent = analyze(["security", "--offline=yes", unitFile("netfleet-agent.service", renderUnit(process.execPath))]);
    const serve = analyze(["security", "--offline=yes", unitFile("netfleet-serve.service", serveForVerify(readFileSync(join(PACKAGING, "netfleet-serve.service"), "utf8")))]);
    console.log(`systemd-analyze security: netfleet-agent.service ${exposure(agent.out)}, netfleet-serve.service ${exposure(serve.out)}`);
    expect(exposure(agent.out)).toBeLessThanOrEqual(4.0);
    expect(exposure(serve.out)).toBeLessThanOrEqual(2.0);
    // What each does without: the agent keeps root's network powers only; serve has none.
    expect(agent.out).toMatch(/✓ CapabilityBoundingSet=~CAP_SYS_ADMIN/);
    expect(agent.out).toMatch(/✓ CapabilityBoundingSet=~CAP_SYS_MODULE/);
    expect(serve.out).toMatch(/✓ User=\/DynamicUser=/);
  });
});
