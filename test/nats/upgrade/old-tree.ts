/**
 * The previous wire protocol's code, for the mixed-fleet tests: the tree of
 * commit 5a82fb1 (tag `wire-1.0`), kept as a committed snapshot
 * (`wire-1.0.tar.gz` beside this file, rebuilt deterministically by
 * `make-snapshot.sh`) because CI clones may be shallow or carry no tags.
 * It is extracted and given its own node_modules, so its processes run its
 * own @netfleet packages with this checkout's third-party ones.
 *
 * wire-1.0 is 5a82fb1: protocol 1.0 came in 816cc29, in the middle of the
 * series that split the packages, and 5a82fb1 is that series' first commit
 * whose whole tree loads and speaks 1.0 (the entry points below run). It
 * is not the release before versioning (6c39f34, unversioned and strict):
 * that one reads no 1.x message (an unknown `protocol` field is refused),
 * so moving from it to 1.x is a flag day, every agent and the controller
 * replaced together, and no mixed-fleet test runs it.
 *
 * The old tree is frozen: only entry points that exist there are used,
 * and they are named here (OLD_ENTRY_POINTS).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readJsonLines } from "../../json-lines.ts";

export const REPO = new URL("../../..", import.meta.url).pathname;

/** The snapshot of the first commit whose whole tree speaks protocol 1.0 (5a82fb1, tag wire-1.0): a gzipped tar made by make-snapshot.sh. */
export const WIRE_SNAPSHOT = new URL("./wire-1.0.tar.gz", import.meta.url).pathname;

/**
 * What the tests run from the old tree, as they are in the snapshot: the
 * simulated agent process (one JSON argument: site, servers,
 * enrollPassword, token, name, stateDir, hostFile, heartbeatMs, resyncMs)
 * and the controller CLI (`serve <site-dir> --state-dir D --listen A:P`,
 * `rollout <site-dir> --state-dir D --json --timeout S`).
 */
export const OLD_ENTRY_POINTS = { simAgent: "test/nats/sim-agent.ts", controllerCli: "packages/controller/src/cli.ts", labInventory: "inventories/lab" } as const;

/** An extracted tree; `remove` deletes it. */
export interface Tree {
  root: string;
  remove(): Promise<void>;
}

/** Runs argv to the end; resolves with its stdout. @throws Error with its stderr when it fails. */
function run(argv: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(" ")}: exit ${code}: ${err.trim()}`))));
  });
}

/**
 * `tar -xzf wire-1.0.tar.gz -C <tmp>`, then node_modules: every entry of
 * this checkout's node_modules but @netfleet, and @netfleet/<pkg> pointing
 * at the extracted tree's packages/<pkg>.
 * @throws Error naming the snapshot when it is missing or tar fails.
 */
export async function extractOldTree(snapshot = WIRE_SNAPSHOT): Promise<Tree> {
  const root = await mkdtemp(join(tmpdir(), "nf-wire-1.0-"));
  try {
    await run(["tar", "-xzf", snapshot, "-C", root], REPO);
    const modules = join(root, "node_modules");
    await mkdir(join(modules, "@netfleet"), { recursive: true });
    for (const entry of await readdir(join(REPO, "node_modules"))) {
      if (entry !== "@netfleet") await symlink(join(REPO, "node_modules", entry), join(modules, entry));
    }
    for (const pkg of await readdir(join(root, "packages"))) await symlink(join(root, "packages", pkg), join(modules, "@netfleet", pkg));
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return { root, remove: () => rm(root, { recursive: true, force: true }) };
}

/** A child process of a tree's code, its JSON log lines, and its exit. */
export interface TreeProcess {
  child: ChildProcess;
  events: Record<string, unknown>[];
  /** stdout lines that were not JSON. */
  text: string[];
  exited: Promise<number | null>;
}

/**
 * Runs `script` (a path inside `root`) with `args`, from `root`, on this
 * checkout's Node (scripts/node.sh: the old tree has no .tools of its own).
 */
export function spawnTreeScript(root: string, script: string, args: string[]): TreeProcess {
  const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(root, script), ...args], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
  const events: Record<string, unknown>[] = [];
  const text: string[] = [];
  readJsonLines(child.stdout!, (parsed, line) => (parsed === undefined ? text.push(line) : events.push(parsed as Record<string, unknown>)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, events, text, exited };
}

/** A process by pid and its command name (/proc/PID/stat's comm), so a pid reused by another program is left alone. */
interface ProcessId {
  pid: number;
  comm: string;
}

/** /proc/PID/stat's comm and ppid; undefined when the process is gone. */
async function statOf(pid: number): Promise<{ comm: string; ppid: number } | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  // "PID (COMM) STATE PPID ...": comm may hold spaces and parentheses, so split after its last ")".
  const close = stat.lastIndexOf(")");
  return { comm: stat.slice(stat.indexOf("(") + 1, close), ppid: Number(stat.slice(close + 2).split(" ")[1]) };
}

/** Every live descendant of `pid` (Linux /proc): the old tree's node under scripts/node.sh, and the nats-server an old `serve` runs. */
async function descendants(pid: number): Promise<ProcessId[]> {
  const children = new Map<number, ProcessId[]>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await statOf(Number(entry));
    if (stat) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), { pid: Number(entry), comm: stat.comm }]);
  }
  const found: ProcessId[] = [];
  for (let queue = [pid]; queue.length > 0; ) {
    const next = children.get(queue.shift()!) ?? [];
    found.push(...next);
    queue.push(...next.map((c) => c.pid));
  }
  return found;
}

/** Whether `p` still runs as the same program. */
async function alive(p: ProcessId): Promise<boolean> {
  return (await statOf(p.pid))?.comm === p.comm;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after 3 s, each descendant still running; waits at most 5 s. */
async function stopLeftovers(left: ProcessId[]): Promise<void> {
  const signal = async (name: NodeJS.Signals) => {
    for (const p of left) {
      if (!(await alive(p))) continue;
      try {
        process.kill(p.pid, name);
      } catch {
        // It exited between the look and the signal.
      }
    }
  };
  await signal("SIGTERM");
  for (let waited = 0; waited < 5000; waited += 100) {
    if (waited === 3000) await signal("SIGKILL");
    if (!(await Promise.all(left.map(alive))).some(Boolean)) return;
    await sleep(100);
  }
}

/**
 * SIGTERM (then SIGKILL after 5 s) a tree process and wait for it (at most
 * 10 s); then the same for whatever it started that outlived it (an old
 * `serve` killed hard leaves its nats-server running). Nothing when it has exited.
 */
export async function stopTreeProcess(p: TreeProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null || p.child.pid === undefined) return;
  const started = await descendants(p.child.pid);
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 5000);
  await Promise.race([p.exited, sleep(10_000)]);
  clearTimeout(timer);
  await stopLeftovers(started);
}
