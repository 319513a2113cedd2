/**
 * The hostile-inventory generator through the real CLI
 * (`sh scripts/node.sh packages/controller/src/cli.ts ...`), for a sample of
 * 24 cases, three from every category (the whole run is in-process in
 * ../hostile-inventories.test.ts). Each sampled case goes through one
 * command: validate (round 0), plan (round 1), or in round 2 validate --json
 * or one that would write or start something (compile --out, token, serve,
 * rollout --check, status, each with its own --out / --state-dir). Each
 * must exit 2 with located one-line problems (--json: every problem with
 * file, line and column) and no stack trace, run no command
 * (a PATH tripwire of ip, ovs-vsctl, ovs-ofctl, nft, virsh, dnsmasq, tc,
 * sysctl, ...) and write nothing (its own HOME and NETFLEET_STATE_DIR stay
 * empty, --out and --state-dir absent, the site folder unchanged). Beside
 * it the positive controls: the tripwire catches a command that is run, and
 * the unmutated baseline passes all four commands under the same tripwire,
 * compile and token writing only where told.
 */
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CATEGORIES, folderOf, generateCases, hostileSeed, OPERATORS, type HostileCase } from "./generate.ts";
import { UNSAFE_CHAR, visible } from "./judge.ts";
import { Scratch } from "./scratch.ts";
import { Site } from "./site.ts";
import { Tripwire } from "./tripwire.ts";

const REPO = join(import.meta.dirname, "..", "..", "..");
const SAMPLE = 24;
/** A command that has not exited in this long is hung (a blocked read); each takes about a second. */
const HANG_BOUND_MS = 30_000;

/**
 * SAMPLE cases: the first case of each operator, taking the categories in
 * turn (round 0: one operator of every category, round 1: the next...).
 */
function sampleCases(cases: HostileCase[]): { c: HostileCase; round: number }[] {
  const queues = CATEGORIES.map((c) => OPERATORS.filter((op) => op.category === c));
  const out: { c: HostileCase; round: number }[] = [];
  for (let round = 0; out.length < SAMPLE && queues.some((q) => q.length > round); round++) {
    for (const q of queues) {
      const op = q[round];
      const first = op && cases.find((x) => x.operator === op);
      if (first && out.length < SAMPLE) out.push({ c: first, round });
    }
  }
  return out;
}

/**
 * The command a sampled case goes through, by round, so that every category
 * meets validate (round 0) and plan (round 1), and round 2 meets
 * validate --json and the commands that would write or start something:
 * compile --out (assignment files), token --state-dir (the site's secrets),
 * serve (nats-server, state), rollout --check and status (NATS, the state
 * dir). One CLI start costs about 1.5 s of CPU, too much to run every command
 * on every case. `i`: the case's place in the sample; `scratchFor`: a folder
 * for this case's --out / --state-dir, which must never appear.
 */
function commandFor(round: number, i: number, dir: string, scratchFor: string): [string, string[], string?] {
  if (round === 1) return ["plan", ["plan", dir]];
  if (round >= 2) {
    const late: [string, string[], string?][] = [
      ["validate --json", ["validate", dir, "--json"]],
      ["compile --out", ["compile", dir, "--out", scratchFor], scratchFor],
      ["token --state-dir", ["token", dir, "--state-dir", scratchFor], scratchFor],
      ["serve --state-dir", ["serve", dir, "--listen", "127.0.0.1:4999", "--state-dir", scratchFor], scratchFor],
      ["rollout --check", ["rollout", dir, "--check", "--state-dir", scratchFor], scratchFor],
      ["status", ["status", dir, "--state-dir", scratchFor], scratchFor],
    ];
    return late[i % late.length]!;
  }
  return ["validate", ["validate", dir]];
}

interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

const seed = hostileSeed();
const sample = sampleCases(generateCases(seed));
let scratch: Scratch;
let tripwire: Tripwire;

/** Where one CLI run may write, and must not: its own HOME, NETFLEET_STATE_DIR and tripwire log. */
interface Sandbox {
  home: string;
  state: string;
  log: string;
}

let sandboxes = 0;
function sandbox(): Sandbox {
  const root = join(scratch.root, `run-${sandboxes++}`);
  const box = { home: join(root, "home"), state: join(root, "state"), log: join(root, "tripwire.log") };
  mkdirSync(box.home, { recursive: true });
  mkdirSync(box.state);
  return box;
}

function netfleet(args: string[], box: Sandbox): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["scripts/node.sh", "packages/controller/src/cli.ts", ...args], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
      env: scratch.env({ PATH: tripwire.path(), HOME: box.home, NETFLEET_STATE_DIR: box.state, NETFLEET_TRIPWIRE_LOG: box.log }),
      timeout: HANG_BOUND_MS,
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Runs `jobs` two at a time (a two-core machine); results in the jobs' order. */
async function pool<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  }));
  return out;
}

/** Names and file types of a folder's entries, to see that nothing was added or replaced. */
function listing(dir: string): string[] {
  return readdirSync(dir).sort().map((n) => {
    const st = lstatSync(join(dir, n));
    return `${n}:${st.isSymbolicLink() ? "link" : st.isFIFO() ? "fifo" : st.isDirectory() ? "dir" : st.size}`;
  });
}

/** Why a refused run is not clean; empty when it is. */
function refusalProblems(run: Run, what: string): string[] {
  const out: string[] = [];
  const all = run.stdout + run.stderr;
  // status is a monitoring check: its 2 means "a host unreachable", so a site it cannot read is 3 (unknown).
  const want = what.startsWith("status") ? 3 : 2;
  if (run.code !== want) out.push(`${what}: exit ${run.code}${run.signal ? ` (signal ${run.signal}: hung and killed)` : ""}, not ${want}: ${visible(all.trim().split("\n").slice(0, 2).join(" | ")).slice(0, 200)}`);
  if (/^\s+at \S/m.test(all)) out.push(`${what}: a stack trace is printed`);
  if (what.endsWith("--json")) out.push(...jsonProblems(run.stdout, what));
  else if (!/:\d+:\d+: /.test(run.stderr)) out.push(`${what}: no located problem (file:line:col:) on stderr`);
  const bad = all.split("\n").filter((l) => UNSAFE_CHAR.test(l));
  if (bad.length > 0) out.push(`${what}: raw control/bidi character in output: ${visible(bad[0]!).slice(0, 200)}`);
  if (all.includes(scratch.marker)) out.push(`${what}: the secret marker is printed`);
  if (all.includes(scratch.secretDir)) out.push(`${what}: the path outside the folder is printed`);
  return out;
}

/** `--json`: one document `{valid: false, problems: [{file, line, col, path, message}, ...]}`, each located. */
function jsonProblems(stdout: string, what: string): string[] {
  let doc: { valid?: unknown; problems?: { file?: unknown; line?: unknown; col?: unknown }[] };
  try {
    doc = JSON.parse(stdout) as typeof doc;
  } catch {
    return [`${what}: stdout is not one JSON document: ${visible(stdout.slice(0, 200))}`];
  }
  const problems = Array.isArray(doc.problems) ? doc.problems : [];
  if (doc.valid !== false || problems.length === 0) return [`${what}: not {valid: false} with problems: ${visible(stdout.slice(0, 200))}`];
  const unlocated = problems.find((p) => typeof p.file !== "string" || !(Number(p.line) >= 1) || !(Number(p.col) >= 1));
  return unlocated ? [`${what}: a problem without file, line and column: ${visible(JSON.stringify(unlocated)).slice(0, 200)}`] : [];
}

/** Commands run and files written by one run. */
function sideEffects(box: Sandbox, what: string): string[] {
  const out: string[] = [];
  const ran = tripwire.invoked(box.log);
  if (ran !== "") out.push(`${what}: ran ${visible(ran.trim().split("\n").join("; "))}`);
  if (readdirSync(box.home).length > 0) out.push(`${what}: wrote into HOME: ${readdirSync(box.home).join(", ")}`);
  if (readdirSync(box.state).length > 0) out.push(`${what}: wrote into NETFLEET_STATE_DIR: ${readdirSync(box.state).join(", ")}`);
  return out;
}

const failures = new Map<string, string[]>();

beforeAll(async () => {
  scratch = new Scratch("nf-hostile-cli-");
  tripwire = new Tripwire(scratch.root);
  const jobs: (() => Promise<void>)[] = [];
  sample.forEach(({ c, round }, i) => {
    const dir = scratch.write(folderOf(c.id), c.build());
    const before = listing(dir);
    const [what, args, mustNotExist] = commandFor(round, i, dir, join(scratch.root, `writes-${i}`));
    jobs.push(async () => {
      const box = sandbox();
      const run = await netfleet(args, box);
      const why = [...refusalProblems(run, what), ...sideEffects(box, what)];
      if (mustNotExist && existsSync(mustNotExist)) why.push(`${what}: created ${mustNotExist}`);
      if (JSON.stringify(listing(dir)) !== JSON.stringify(before)) why.push(`${what}: the site folder changed`);
      failures.set(c.id, why);
    });
  });
  await pool(jobs);
}, 600_000);

afterAll(() => scratch?.remove());

describe(`hostile inventories through the CLI (seed ${seed}; replay with NETFLEET_HOSTILE_SEED=${seed})`, () => {
  it(`samples ${SAMPLE} cases from every category`, () => {
    expect(sample.length).toBe(SAMPLE);
    const seen = (round: number) => new Set(sample.filter((x) => x.round === round).map((x) => x.c.operator.category));
    expect([seen(0), seen(1), seen(2)]).toEqual([new Set(CATEGORIES), new Set(CATEGORIES), new Set(CATEGORIES)]);
    const commands = sample.map(({ round }, i) => commandFor(round, i, "DIR", "")[0]);
    expect(new Set(commands)).toEqual(new Set(["validate", "plan", "validate --json", "compile --out", "token --state-dir", "serve --state-dir", "rollout --check", "status"]));
  });

  it.each(sample.map(({ c, round }, i) => [`${commandFor(round, i, "DIR", "")[0]}: ${c.id}`, c] as const))("%s: exit 2 (status: 3), located, nothing run, nothing written", (_id, c) => {
    expect(failures.get(c.id)?.map((f) => `[seed ${seed}] ${c.mutation.detail}: ${f}`)).toEqual([]);
  });
});

describe("positive controls under the same tripwire", () => {
  it("the tripwire catches a command that is run", async () => {
    const box = sandbox();
    const code = await new Promise<number | null>((resolve) => {
      spawn("ip", ["link", "add", "x", "type", "bond"], { env: { ...process.env, PATH: tripwire.path(), NETFLEET_TRIPWIRE_LOG: box.log }, stdio: "ignore" }).on("close", resolve);
    });
    expect(code).toBe(97);
    expect(tripwire.invoked(box.log)).toBe("ip link add x type bond\n");
  }, 60_000);

  it("the baseline: validate and plan exit 0, run nothing, write nothing; compile and token write only where told", async () => {
    const dir = scratch.write("control-baseline", Site.baseline());
    const before = listing(dir);
    const out = join(scratch.root, "control-out");
    const tokenState = join(scratch.root, "control-state");
    const boxes = [sandbox(), sandbox(), sandbox(), sandbox()];
    const [validate, plan, compile, token] = await pool([
      () => netfleet(["validate", dir], boxes[0]!),
      () => netfleet(["plan", dir], boxes[1]!),
      () => netfleet(["compile", dir, "--out", out], boxes[2]!),
      () => netfleet(["token", dir, "--state-dir", tokenState], boxes[3]!),
    ]);
    expect([validate!.code, validate!.stdout]).toEqual([0, expect.stringContaining("valid — site base, 2 networks, 2 hosts, 2 VMs")]);
    expect([plan!.code, plan!.stderr]).toEqual([0, ""]);
    expect(plan!.stdout).toMatch(/^host hv1 \(vmhost\)/m);
    expect([compile!.code, readdirSync(out).sort()]).toEqual([0, ["gw.json", "hv1.json"]]);
    expect(token!.code).toBe(0);
    expect(readdirSync(tokenState).length).toBeGreaterThan(0);
    expect(boxes.flatMap((b, i) => sideEffects(b, ["validate", "plan", "compile", "token"][i]!))).toEqual([]);
    expect(listing(dir)).toEqual(before);
  }, 120_000);
});
