/**
 * The lab as a playground: `netfleet-lab rollout DIR` rolls an edited site
 * folder out to the running lab through the lab's own controller (the one
 * `up` started), and `labController` says how to reach that controller with
 * `netfleet` by hand.
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { loadInventory } from "@netfleet/shared";
import { controllerCommand, ROLLOUT_CONFIRM } from "./agents.ts";
import { LabExec, netnsExec } from "./exec.ts";
import { productBin } from "./product.ts";
import { ensureVmServices } from "./services.ts";
import { readLabState, writeLabState } from "./state.ts";
import { buildTopology, type Topology } from "./topology.ts";
import { topologyChanges } from "./topology-diff.ts";
import type { LabController, LabOptions } from "./types.ts";

/** A site folder that the running lab cannot take by a rollout: it changes what the lab is built of. */
export class LabShapeError extends Error {
  readonly changes: string[];
  constructor(dir: string, o: Pick<LabOptions, "prefix" | "runDir">, changes: string[]) {
    super(
      `${dir} does not fit lab ${o.prefix} as built (${changes.join("; ")}); a rollout changes policy, port-forwards, allow lists, DHCP and DNS, ` +
        `but hosts, VMs, networks and their addresses need the lab rebuilt: ${labCommand(o, ["up", "--inventory", dir])}`,
    );
    this.name = "LabShapeError";
    this.changes = changes;
  }
}

/**
 * The `netfleet-lab` command line for lab `o`: `args`, then `--prefix` and
 * `--run-dir` where they are not the defaults (nf, /run/netfleet-lab/<prefix>),
 * so a hint names the same lab. Quoted for a shell.
 */
export function labCommand(o: Pick<LabOptions, "prefix" | "runDir">, args: string[]): string {
  const where = [...(o.prefix === "nf" ? [] : ["--prefix", o.prefix]), ...(o.runDir === `/run/netfleet-lab/${o.prefix}` ? [] : ["--run-dir", o.runDir])];
  return shellLine(["netfleet-lab", ...args, ...where]);
}

/** How `netfleet` reaches the controller of the lab whose topology is `t` (see LabController). */
export function labController(t: Topology, o: Pick<LabOptions, "repoRoot">): LabController {
  const c = t.controller;
  const argv = netnsExec(c.namespace, ["env", `NETFLEET_STATE_DIR=${c.stateDir}`, process.execPath, productBin(o, "controller")]);
  return { namespace: c.namespace, stateDir: c.stateDir, nats: c.url, argv, command: shellLine(argv) };
}

/**
 * argv as one line a POSIX shell splits back into the same words: a word of
 * only `A-Za-z0-9_/.:=@%+,-` as it is, any other in single quotes (a quote
 * inside as `'\''`). See POSIX.1-2017 XCU 2.2.2 (single quotes).
 */
export function shellLine(argv: readonly string[]): string {
  return argv.map((w) => (/^[A-Za-z0-9_/.:=@%+,-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(" ");
}

/** What `labRollout` did: netfleet rollout's exit code and output, and the site folder now rolled out. */
export interface LabRolloutResult {
  /** The site folder, absolute. */
  dir: string;
  check: boolean;
  /** `netfleet rollout`'s exit code: 0 done, 1 failed (reverted), 2 invalid, 3 partial, 4 refused (lock held). */
  exitCode: number;
  /** Its stdout lines: text, or one JSON event per line with `json`. */
  stdout: string[];
  /** Its stderr lines (a refusal, an invalid site). */
  stderr: string[];
}

/** How long a `netfleet rollout` of the lab may take before it is killed: 15 min (each host has 180 s, the lab's 3 go in 3 waves). */
const ROLLOUT_TIMEOUT_MS = 900_000;

/**
 * Rolls site folder `dir` out to the running lab `o`: `netfleet rollout DIR`
 * (with `--check`: only what the agents would change) run by the lab's
 * controller machine against the lab's controller, each line of its stdout
 * handed to `onLine` as it comes (a rollout takes a minute). After a
 * rollout that exits 0 the VMs' TCP services follow the site's
 * port-forwards and the lab records `dir` as what it runs (`check` and
 * `attack` then probe it).
 * @throws Error when there is no lab in `o.runDir` or netfleet could not be started; InventoryError for a
 *   site that does not load; LabShapeError (nothing run) when `dir` changes the lab's hosts, VMs, networks or addresses.
 */
export async function labRollout(o: LabOptions, dir: string, options: { check?: boolean; json?: boolean; onLine?: (line: string) => void } = {}): Promise<LabRolloutResult> {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run ${labCommand(o, ["up"])})`);
  const site = resolve(dir);
  const next = buildTopology(loadInventory(site), o);
  const changes = topologyChanges(state.topology, next);
  if (changes.length > 0) throw new LabShapeError(dir, o, changes);
  const check = options.check === true;
  const args = ["rollout", site, ...ROLLOUT_CONFIRM, ...(check ? ["--check"] : []), ...(options.json ? ["--json"] : [])];
  const result = { dir: site, check, ...(await streamed(controllerCommand(state.topology, o, args), options.onLine ?? (() => {}))) };
  if (check || result.exitCode !== 0) return result;
  for (const key of Object.keys(state.pids)) if (key.startsWith("service@")) delete state.pids[key];
  Object.assign(state.pids, await ensureVmServices(new LabExec(), next));
  state.topology = next;
  state.rolledOut = { dir: site, at: new Date().toISOString() };
  writeLabState(o.runDir, state);
  return result;
}

/**
 * Runs argv (no shell, stdin closed, killed after ROLLOUT_TIMEOUT_MS) and
 * hands each non-empty stdout line to `onLine` as it arrives. Returns its
 * exit code (1 when a signal ended it) and its non-empty lines.
 */
async function streamed(argv: string[], onLine: (line: string) => void): Promise<Pick<LabRolloutResult, "exitCode" | "stdout" | "stderr">> {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], timeout: ROLLOUT_TIMEOUT_MS, killSignal: "SIGTERM" });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const read = (stream: NodeJS.ReadableStream, into: string[], each?: (l: string) => void) =>
    new Promise<void>((done) => {
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      lines.on("line", (l) => {
        if (l.length === 0) return;
        into.push(l);
        each?.(l);
      });
      lines.on("close", done);
    });
  const exit = new Promise<number>((done, fail) => {
    child.on("error", (err) => fail(new Error(`could not run ${argv.join(" ")}: ${err.message}`)));
    child.on("close", (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
  const [exitCode] = await Promise.all([exit, read(child.stdout, stdout, onLine), read(child.stderr, stderr)]);
  return { exitCode, stdout, stderr };
}
