/**
 * The previous wire protocol's code, for the mixed-fleet tests: the tree at
 * the tag `wire-1.0` (the commit that introduced protocol 1.0), extracted
 * with `git archive` and given its own node_modules, so its processes run
 * its own @netfleet packages with this checkout's third-party ones.
 *
 * The old tree is a snapshot: only entry points that exist there are used,
 * and they are named here (OLD_ENTRY_POINTS).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readJsonLines } from "../../json-lines.ts";

export const REPO = new URL("../../..", import.meta.url).pathname;

/** The tag of the commit that introduced protocol 1.0 (a lightweight tag; CI clones carry tags, shallow ones may not). */
export const WIRE_TAG = "wire-1.0";

/**
 * What the tests run from the old tree, as it is at WIRE_TAG: the
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
 * `git archive <tag> | tar -x -C <tmp>`, then node_modules: every entry of
 * this checkout's node_modules but @netfleet, and @netfleet/<pkg> pointing
 * at the extracted tree's packages/<pkg>.
 * @throws Error saying the tag is missing (e.g. a shallow clone) and how to get it.
 */
export async function extractTag(tag = WIRE_TAG): Promise<Tree> {
  await run(["git", "rev-parse", "--verify", "--quiet", `refs/tags/${tag}^{commit}`], REPO).catch(() => {
    throw new Error(`tag ${tag} is absent from this clone (a shallow clone or one without tags): run 'git fetch --tags --unshallow' to test a fleet mid-upgrade`);
  });
  const root = await mkdtemp(join(tmpdir(), `nf-${tag}-`));
  try {
    await new Promise<void>((resolve, reject) => {
      const archive = spawn("git", ["archive", tag], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
      const tar = spawn("tar", ["-x", "-C", root], { stdio: ["pipe", "inherit", "inherit"] });
      archive.stdout.pipe(tar.stdin);
      archive.once("error", reject);
      tar.once("error", reject);
      tar.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`git archive ${tag} | tar -x: tar exit ${code}`))));
    });
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

/** SIGTERM (then SIGKILL after 5 s) a tree process and wait for it; nothing when it has exited. */
export async function stopTreeProcess(p: TreeProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 5000);
  await p.exited;
  clearTimeout(timer);
}
