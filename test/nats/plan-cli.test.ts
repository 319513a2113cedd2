/**
 * `netfleet rollout --check --out FILE` and `netfleet rollout --plan FILE`
 * as an operator runs them (the CLI's main), against a real nats-server and
 * agents of the lab inventory (three hosts). Each agent answers check and
 * apply for a host model: the resources it holds (by id, their spec), whose
 * observed-state hash is the sha256 of what it holds of the assignment's
 * resources; an apply carrying a plan's hash that no longer matches runs
 * nothing and fails with the engine's words ("host changed since the plan").
 * The real engine's refusal is plan-agent.test.ts's.
 *   1. the plan is saved (every host, its assignment, desired revision and
 *      observed hash) and applied exactly: each host gets the planned
 *      assignment once, its envelope carrying the plan's observed hash;
 *   2. the inventory edited after the plan: refused naming the host, nothing
 *      published (every desired KV revision unchanged);
 *   3. a host's desired entry moved after the plan: refused naming it; a
 *      check that does not pass on every host writes no plan; --json ends
 *      with a `plan` event naming the file;
 *   4. a host changed after the plan: its agent refuses, nothing of the plan
 *      reaches it, the rollout fails naming it;
 *   5. a bad plan file: one line naming the file and the problem;
 *   6. off a terminal without --yes: a usage error naming --yes, nothing
 *      published; --out without --check and --plan with --limit are usage errors;
 *   7. from a terminal (the CLI as a process on a pseudo-terminal, python3's
 *      pty): the diff and a summary, then (y/N): "n" publishes nothing, "y" rolls
 *      out; an --agent-bundle rollout asks too.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { canonicalJson, loadInventory, resourceId, type HostAssignment } from "@netfleet/shared";
import { compileSite } from "@netfleet/controller";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { readPlanFile } from "../../packages/controller/src/rollout/plan-file.ts";
import { startAgent, startSite, stopAll, writeControllerHome, type Site, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
let site: Site | undefined;
const agents: TestAgent[] = [];
/** The inventory copies setup made, removed after each test. */
const copies: string[] = [];
afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
  for (const d of copies.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A host as its agent sees it: spec (canonical JSON) by resource id; `applied` records each apply that ran. */
interface ModelHost {
  name: string;
  state: Map<string, string>;
  applied: string[];
  refused: string[];
}

function observedOf(host: ModelHost, assignment: HostAssignment): string {
  const seen = assignment.resources.map((r) => [resourceId(r), host.state.get(resourceId(r)) ?? null]);
  return createHash("sha256").update(canonicalJson(seen)).digest("hex");
}

function startModelAgent(s: Site, host: ModelHost): TestAgent {
  const a = startAgent(s, {
    hostname: host.name,
    onCheck: async (assignment) => {
      // As the agent's check pass reports it (fleet/check.ts CheckResult): field names, values before and after, the observed hash.
      const differ = assignment.resources.filter((r) => host.state.get(resourceId(r)) !== canonicalJson(r));
      const results = assignment.resources.map((r) => ({ id: resourceId(r), result: differ.includes(r) ? null : true }));
      return {
        summary: { ok: results.length - differ.length, changed: 0, failed: 0, pending: differ.length },
        results,
        changes: Object.fromEntries(differ.map((r) => [resourceId(r), ["spec"]])),
        details: Object.fromEntries(differ.map((r) => [resourceId(r), { fields: [{ field: "spec", before: host.state.get(resourceId(r)) ?? "", after: canonicalJson(r) }] }])),
        observed: observedOf(host, assignment),
      };
    },
    onAssignment: async (assignment, revision, options) => {
      const observed = observedOf(host, assignment);
      if (options.expectObserved !== undefined && options.expectObserved !== observed) {
        host.refused.push(assignment.hash);
        const comment = `host changed since the plan (observed ${observed.slice(0, 12)}, plan made against ${options.expectObserved.slice(0, 12)})`;
        return { summary: { ok: 0, changed: 0, failed: 1, pending: 0 }, results: [{ id: "plan", result: false, comment }] };
      }
      for (const r of assignment.resources) host.state.set(resourceId(r), canonicalJson(r));
      host.applied.push(assignment.hash);
      a.applied.push({ revision, hash: assignment.hash });
      return { summary: { ok: assignment.resources.length, changed: assignment.resources.length, failed: 0, pending: 0 }, results: assignment.resources.map((r) => ({ id: resourceId(r), result: true })) };
    },
  });
  return a;
}

/** Runs the netfleet CLI on a pseudo-terminal (python3 pty.spawn: argv, no shell); answers `answer` to its (y/N) question. */
async function inTerminal(argv: string[], answer: string): Promise<{ code: number | null; output: string }> {
  const pty = "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))";
  const child = spawn("python3", ["-c", pty, "sh", join(REPO, "scripts/node.sh"), join(REPO, "packages/controller/src/cli.ts"), ...argv], { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => {
    const asked = output.includes("(y/N)");
    output += d.toString();
    if (!asked && output.includes("(y/N)")) child.stdin!.write(`${answer}\n`);
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  clearTimeout(timer);
  return { code, output: output.replace(/\r/g, "") };
}

async function desiredRevisions(s: Site): Promise<Record<string, number>> {
  return Object.fromEntries([...(await s.cp.desired.readAll())].map(([h, e]) => [h, e.kvRevision]));
}

async function setup(basePort: number) {
  const dir = join((await import("node:os")).tmpdir(), `nf-plan-cli-${basePort}-${process.pid}`);
  copies.push(dir);
  await cp(join(REPO, "inventories", "lab"), dir, { recursive: true });
  const inventory = loadInventory(dir);
  site = await startSite({ basePort, hosts: inventory.hosts });
  const hosts = inventory.hosts.map((h): ModelHost => ({ name: h.name, state: new Map(), applied: [], refused: [] }));
  for (const h of hosts) agents.push(startModelAgent(site, h));
  await Promise.all(agents.map((a) => a.started));
  const stateDir = await writeControllerHome(site, dir);
  const planFile = join(site.dir, "plan.json");
  const run = async (...argv: string[]) => {
    const out = memoryOutput(false);
    const code = await main(["rollout", dir, "--state-dir", stateDir, "--timeout", "20", ...argv], out);
    return { code, stdout: out.stdout.join("\n"), stderr: out.stderr.join("\n") };
  };
  return { dir, hosts, planFile, run, byName: (n: string) => hosts.find((h) => h.name === n)! };
}

/** The MAC of vmb2 (a VM on hostb) in the lab inventory, changed: hostb's assignment (at least) compiles differently. */
async function editHostb(dir: string, mac: string): Promise<void> {
  const file = join(dir, "networks.yaml");
  const text = await readFile(file, "utf8");
  await writeFile(file, text.replace(/(    vmb2:.*\n        mac: )52:54:00:81:0b:[0-9a-f]{2}/, `$1${mac}`));
}

describe("netfleet rollout plans", () => {
  it("--check --out saves the plan; --plan applies exactly it; an edited inventory or a moved desired entry is refused naming the host, nothing published", async () => {
    const t = await setup(23200);
    const s = site!;

    // 1. The plan: every host, fresh (no desired entry), its agent's observed hash; then applied exactly.
    const checked = await t.run("--check", "--out", t.planFile);
    expect(checked.code, checked.stderr).toBe(0);
    expect(checked.stdout).toContain(`plan written to ${t.planFile}: 3 hosts; apply it with netfleet rollout ${t.dir} --plan ${t.planFile}`);
    const plan = await readPlanFile(t.planFile);
    const compiled = new Map(compileSite(loadInventory(t.dir)).map((a) => [a.host, a]));
    expect(plan.hosts.map((h) => h.host).sort()).toEqual(["backend", "hosta", "hostb"]);
    for (const h of plan.hosts) {
      expect(h.assignment).toBe(compiled.get(h.host)!.hash);
      expect([h.basedOn, h.from, h.status]).toEqual([0, null, "new"]);
      expect(h.observed).toBe(observedOf(t.byName(h.host), compiled.get(h.host)!));
      expect(h.changes.length).toBe(compiled.get(h.host)!.resources.length);
    }
    expect(await desiredRevisions(s)).toEqual({});

    const applied = await t.run("--plan", t.planFile, "--yes");
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain(`plan ${t.planFile}: site lab`);
    for (const h of t.hosts) expect(h.applied).toEqual([compiled.get(h.name)!.hash]);
    const desired = await s.cp.desired.readAll();
    for (const h of plan.hosts) expect(desired.get(h.host)!.envelope.plan).toEqual({ observed: h.observed });

    // 2. A plan made now (nothing to change; --json: one event a line, the last says where the plan went), then vmb2's MAC
    // edited: refused naming each host that compiles differently, nothing published.
    const json = memoryOutput(true);
    expect(await main(["rollout", t.dir, "--state-dir", join(s.dir, "controller"), "--check", "--out", t.planFile, "--json"], json)).toBe(0);
    expect(JSON.parse(json.stdout.at(-1)!)).toEqual({ event: "plan", file: t.planFile, hosts: 3 });
    expect((await readPlanFile(t.planFile)).hosts.map((h) => [h.host, h.status, h.changes.length])).toEqual([["backend", "unchanged", 0], ["hosta", "unchanged", 0], ["hostb", "unchanged", 0]]);
    const before = await desiredRevisions(s);
    await editHostb(t.dir, "52:54:00:81:0b:22");
    const moved = compileSite(loadInventory(t.dir)).filter((a) => a.hash !== compiled.get(a.host)!.hash).map((a) => a.host);
    expect(moved).toContain("hostb");
    const stale = await t.run("--plan", t.planFile, "--yes");
    expect(stale.code).toBe(2);
    for (const h of moved) expect(stale.stderr).toContain(`netfleet rollout: refused (plan ${t.planFile}): ${h}: the inventory compiles to another assignment now`);
    expect(await desiredRevisions(s)).toEqual(before);
    await editHostb(t.dir, "52:54:00:81:0b:02");

    // 3. A plan, then someone publishes to hosta: refused naming hosta (under the lock, before anything is written).
    expect((await t.run("--check", "--out", t.planFile)).code).toBe(0);
    await s.cp.publish(compiled.get("hosta")!, { force: true });
    const afterPublish = await desiredRevisions(s);
    const raced = await t.run("--plan", t.planFile, "--yes");
    expect(raced.code).toBe(2);
    expect(raced.stderr).toContain(`netfleet rollout: refused (plan ${t.planFile}): hosta: its desired state moved since the plan (desired KV revision ${afterPublish.hosta}, the plan was made against ${before.hosta})`);
    expect(raced.stderr).not.toMatch(/\): (backend|hostb):/);
    expect(await desiredRevisions(s)).toEqual(afterPublish);

    // A check that does not pass on every host writes no plan (hostb's agent stopped: no answer).
    await rm(t.planFile);
    await agents.find((a) => a.client.host === "hostb")!.client.stop();
    const partial = await t.run("--check", "--out", t.planFile, "--max-fail", "1", "--timeout", "3");
    expect(partial.code).toBe(3);
    expect(partial.stderr).toBe(`netfleet rollout: no plan written to ${t.planFile}: the check did not pass on every host (failed or not checked: hostb)`);
    await expect(stat(t.planFile)).rejects.toThrow(/ENOENT/);
  }, 120_000);

  it("a host changed since the plan refuses it and nothing of the plan reaches it; a bad plan file and a rollout off a terminal without --yes change nothing", async () => {
    const t = await setup(23210);
    const s = site!;
    expect((await t.run("--yes")).code).toBe(0);
    const first = new Map(compileSite(loadInventory(t.dir)).map((a) => [a.host, a]));

    // 4. hostb's assignment changes (inventory edited, then planned); then its host changes behind the plan's back.
    await editHostb(t.dir, "52:54:00:81:0b:22");
    expect((await t.run("--check", "--out", t.planFile)).code).toBe(0);
    const plan = await readPlanFile(t.planFile);
    const planned = plan.hosts.find((h) => h.host === "hostb")!;
    expect(planned.changes.length).toBeGreaterThan(0);
    const hostb = t.byName("hostb");
    const someId = resourceId(first.get("hostb")!.resources[0]!);
    hostb.state.set(someId, "changed by hand");
    const refused = await t.run("--plan", t.planFile, "--yes", "--max-fail", "2");
    expect(refused.stdout).toMatch(/hostb: FAILED.*refused by the agent: host changed since the plan \(observed [0-9a-f]{12}, plan made against [0-9a-f]{12}\)/);
    expect(refused.code).toBe(3);
    expect(hostb.refused).toEqual([planned.assignment]);
    expect(hostb.applied).not.toContain(planned.assignment);
    expect(hostb.state.get(someId)).toBe("changed by hand");

    // 5. A bad plan file: one line naming the file and the problem; nothing published.
    const before = await desiredRevisions(s);
    const bad = JSON.parse(await readFile(t.planFile, "utf8")) as { hosts: { observed: string }[] };
    bad.hosts[0]!.observed = "not-a-hash";
    await writeFile(t.planFile, JSON.stringify(bad));
    const badRun = await t.run("--plan", t.planFile, "--yes");
    expect(badRun.code).toBe(2);
    expect(badRun.stderr).toBe(`netfleet rollout: --plan ${t.planFile}: hosts[0].observed: a sha256 in hex (64 digits 0-9a-f)`);
    // Edited but well-formed (hostb "unchanged", nothing to change): its signature no longer holds, refused.
    const edited = JSON.parse(await readFile(t.planFile, "utf8")) as { hosts: { observed: string; status: string; changes: unknown[] }[] };
    edited.hosts[0]!.observed = "0".repeat(64);
    await writeFile(t.planFile, JSON.stringify({ ...edited, hosts: edited.hosts.map((h) => ({ ...h, status: "unchanged", changes: [] })) }));
    const tampered = await t.run("--plan", t.planFile, "--yes");
    expect(tampered.code).toBe(2);
    expect(tampered.stderr).toBe(`netfleet rollout: --plan ${t.planFile}: not signed by this controller's key (edited since it was written, or made by another controller or key); make a new plan with --check --out`);
    await writeFile(t.planFile, "{ truncated");
    expect((await t.run("--plan", t.planFile, "--yes")).stderr).toMatch(new RegExp(`^netfleet rollout: --plan ${t.planFile}: not JSON: `));

    // 6. Off a terminal (vitest's stdin) without --yes: a usage error naming --yes; --check needs none.
    const noYes = await t.run();
    expect(noYes.code).toBe(64);
    expect(noYes.stderr).toContain("give --yes to roll out without asking");
    expect(await t.run("--check", "--out", "/nonexistent-nf/plan.json")).toEqual({ code: 2, stdout: "", stderr: "netfleet rollout: --out /nonexistent-nf/plan.json: cannot write in /nonexistent-nf (ENOENT)" });
    expect(await t.run("--yes", "--max-per", "zone=1")).toEqual({ code: 2, stdout: "", stderr: "netfleet rollout: --max-per zone=1: no host of this rollout of site lab has the label zone" });
    expect(await desiredRevisions(s)).toEqual(before);
    expect(await t.run("--out", t.planFile, "--yes")).toMatchObject({ code: 64, stderr: expect.stringContaining("--out goes with --check") });
    expect(await t.run("--plan", t.planFile, "--limit", "hosta", "--yes")).toMatchObject({ code: 64, stderr: expect.stringContaining("--plan does not go with --check, --resume, --agent-bundle or --limit") });
    expect(await desiredRevisions(s)).toEqual(before);

    // 7. From a terminal: the diff, the summary and the question; "n" publishes nothing (exit 1), "y" rolls out.
    const argv = ["rollout", t.dir, "--state-dir", join(s.dir, "controller"), "--timeout", "20"];
    const no = await inTerminal(argv, "n");
    expect(no.output).toMatch(/hostb \(vmhost\): same assignment, not yet applied/);
    expect(no.output).toMatch(/rollout: \d+ hosts? to change in \d+ waves? \([\d+]+\), failure budget 0; \d+ unchanged\nRoll out\? \(y\/N\) n\n/);
    expect(no.output).toContain("netfleet rollout: cancelled: nothing was published");
    expect(no.code).toBe(1);
    expect(await desiredRevisions(s)).toEqual(before);
    const yes = await inTerminal(argv, "y");
    expect(yes.output).toContain("SUCCESS:");
    expect(yes.code).toBe(0);
    expect((await desiredRevisions(s)).hostb).toBeGreaterThan(before.hostb!);
    expect(hostb.applied.at(-1)).toBe(planned.assignment);

    // An agent rollout asks too, before it connects or stores anything.
    const bundle = join(s.dir, "agent.mjs");
    await writeFile(bundle, "console.log('0.9.9');\n");
    const agentNo = await inTerminal(["rollout", t.dir, "--state-dir", join(s.dir, "controller"), "--agent-bundle", bundle, "--agent-version", "0.9.9"], "n");
    expect(agentNo.output).toContain("Roll agent 0.9.9 out to the approved hosts among 3 (backend hosta hostb)? (y/N) n\nnetfleet rollout: cancelled: nothing was published");
    expect(agentNo.code).toBe(1);
  }, 120_000);
});
