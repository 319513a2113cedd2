import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NftTableSpec, sealAssignment, type HostAssignment } from "@netfleet/shared";

/**
 * `netfleet-agent apply --check` as an operator runs it, on a real nft 1.0.6
 * table in a network namespace of its own (prefix `nfdf`): the firewall's
 * unified diff for a moved port-forward and for a rule inserted by hand,
 * exit 2 while changes are pending, nothing changed by the check; the
 * converged host as control (exit 0, no diff, the same observed-state hash).
 */
const REPO = join(import.meta.dirname, "..", "..");
const AGENT = join(REPO, "packages", "agent", "bin", "netfleet-agent.mjs");
const NS = `nfdf${process.pid % 100000}`;
const spec = NftTableSpec.parse(JSON.parse(readFileSync(join(REPO, "packages", "agent", "src", "resources", "__fixtures__", "nft", "gateway-spec.json"), "utf8")));
const dir = mkdtempSync(join(tmpdir(), "nf-check-diff-"));

const must = async (argv: string[]) => {
  const r = await execa(argv[0]!, argv.slice(1), { reject: false });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
};
const inNs = (argv: string[]) => ["ip", "netns", "exec", NS, ...argv];
const nftList = () => must(inNs(["nft", "list", "table", "inet", "netfleet"]));

/** The gateway's assignment with `forwards` (default: the fixture's), written to a file of its own. */
function assignmentFile(name: string, forwards = spec.forwards): string {
  const doc: HostAssignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "difftest", host: "gw", role: "backend", resources: [{ ...spec, forwards }] });
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

/** `netfleet-agent apply --assignment FILE` in the namespace, as a process: exit code, stdout, stderr. */
async function agent(file: string, ...flags: string[]) {
  const r = await execa("ip", ["netns", "exec", NS, process.execPath, AGENT, "apply", "--assignment", file, "--any-host", "--run-dir", join(dir, "run"), ...flags], { reject: false });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

const moved = spec.forwards.map((f) => (f.listen === 2222 ? { ...f, listen: 2223 } : f));

beforeAll(async () => {
  await must(["ip", "netns", "add", NS]);
  for (const [wan, cidr] of [["wan0", "203.0.113.5/24"], ["wan1", "198.51.100.5/24"]] as const) {
    await must(inNs(["ip", "link", "add", wan, "type", "veth", "peer", "name", `${wan}-peer`]));
    await must(inNs(["ip", "addr", "add", cidr, "dev", wan]));
    await must(inNs(["ip", "link", "set", wan, "up"]));
  }
  const first = await agent(assignmentFile("base"));
  if (first.code !== 0) throw new Error(`first apply exited ${first.code}: ${first.stdout}\n${first.stderr}`);
});

afterAll(async () => {
  await execa("ip", ["netns", "del", NS], { reject: false });
  rmSync(dir, { recursive: true, force: true });
});

describe("netfleet-agent apply --check on a real nft table", () => {
  it("control: the converged host exits 0, prints no diff, and two checks observe the same hash", async () => {
    const r = await agent(assignmentFile("base"), "--check");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok +nft-table\[netfleet\]$/m);
    expect(r.stdout).not.toMatch(/^\s+(---|\+\+\+|@@) /m);
    const a = JSON.parse((await agent(assignmentFile("base"), "--check", "--json")).stdout) as { observed: string; summary: { pending: number } };
    const b = JSON.parse((await agent(assignmentFile("base"), "--check", "--json")).stdout) as { observed: string };
    expect(a.summary.pending).toBe(0);
    expect(a.observed).toMatch(/^[0-9a-f]{64}$/);
    expect(b.observed).toBe(a.observed);
  });

  it("a moved port-forward: exit 2, the DNAT rules old and new in a unified diff, and the table left as it was", async () => {
    const before = await nftList();
    const r = await agent(assignmentFile("moved", moved), "--check");
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const lines = r.stdout.split("\n").map((l) => l.replace(/^ {10}/, ""));
    expect(lines).toContain("CHANGE? nft-table[netfleet]: would change (check mode)");
    expect(lines).toContain("--- live: nft list table inet netfleet");
    expect(lines).toContain("+++ desired: table inet netfleet");
    expect(lines).toContain('-\t\tiifname { "wan0", "wan1" } tcp dport 2222 dnat ip to 10.82.0.12:22');
    expect(lines).toContain('+\t\tiifname { "wan0", "wan1" } tcp dport 2223 dnat ip to 10.82.0.12:22');
    expect(lines.some((l) => /^@@ -\d+,\d+ \+\d+,\d+ @@$/.test(l))).toBe(true);
    expect(await nftList()).toBe(before);
    console.log(`apply --check of the moved forward (exit ${r.code}):\n${r.stdout}`);
  });

  it("a rule inserted by hand: exit 2, the rule as a removed line, another observed hash; apply, and the check is back to exit 0", async () => {
    const control = JSON.parse((await agent(assignmentFile("base"), "--check", "--json")).stdout) as { observed: string };
    await must(inNs(["nft", "insert", "rule", "inet", "netfleet", "forward", "iifname", "evil0", "accept"]));
    const r = await agent(assignmentFile("base"), "--check");
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const edits = r.stdout.split("\n").map((l) => l.replace(/^ {10}/, "")).filter((l) => /^[-+](?![-+]{2} )/.test(l));
    expect(edits).toEqual(['-\t\tiifname "evil0" accept']);
    const json = JSON.parse((await agent(assignmentFile("base"), "--check", "--json")).stdout) as { observed: string; results: { id: string; diff?: string; changes: Record<string, { old: unknown; new: unknown }> }[] };
    expect(json.observed).not.toBe(control.observed);
    expect(json.results[0]!.changes.ruleset).toEqual({ old: ['chain forward: iifname "evil0" accept'], new: [] });
    expect(json.results[0]!.diff).toContain('-\t\tiifname "evil0" accept');
    const applied = await agent(assignmentFile("base"));
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/^changed nft-table\[netfleet\]/m);
    const again = await agent(assignmentFile("base"), "--check", "--json");
    expect(again.code).toBe(0);
    expect((JSON.parse(again.stdout) as { observed: string }).observed).toBe(control.observed);
  });
});
