import { constants, lstatSync } from "node:fs";
import { chmod, mkdir, readFile, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { mutate, type Runner } from "../exec/runner.ts";
import type { Toolbox } from "../tools.ts";
import { observeAddresses } from "./ip-link.ts";
import { parseManagementLinks, parseRoutes } from "./ip-json.ts";
import { undoLines, type FailedMove, type ManagementMove } from "./management-guard.ts";
import type { ManagementView } from "./management-view.ts";
import type { ObserveContext } from "./types.ts";
import { writeOwned } from "../write-owned.ts";

/**
 * The runtime half of the management guard: what the engine reads before a
 * pass, the record of a move kept in the state dir while it is under way (a
 * crash mid-way is undone on the next start), the local lockout check after
 * the pass, and the undo.
 */

/** `<stateDir>/management-move.json`: the moves of the pass under way, as they were before (JSON array of ManagementMove). */
export function moveRecordPath(tools: Toolbox): string {
  return join(tools.stateDir, "management-move.json");
}

/** `<stateDir>/management-move-failed.json`: a move undone by the lockout check; the guard refuses it again until removed. */
export function failedRecordPath(tools: Toolbox): string {
  return join(tools.stateDir, "management-move-failed.json");
}

/**
 * Reads what the guard needs: links, addresses, the main routing table and
 * the route to each controller address (`ip -json route get A`; an address
 * with no route is left out).
 */
export async function observeManagement(ctx: ObserveContext, controllers: readonly string[]): Promise<ManagementView> {
  const [links, addresses, routes] = await Promise.all([
    ctx.read(ctx.tools.ip("-details", "-json", "link", "show")).then((r) => parseManagementLinks(r.stdout)),
    observeAddresses(ctx),
    ctx.read(ctx.tools.ip("-json", "route", "show")).then((r) => parseRoutes(r.stdout)),
  ]);
  const controllerRoutes: ManagementView["controllerRoutes"] = [];
  for (const controller of controllers) {
    const r = await ctx.read(ctx.tools.ip("-json", "route", "get", controller), { allowFailure: true });
    if (r.exitCode !== 0) continue;
    const route = parseRoutes(r.stdout, `ip -json route get ${controller}`)[0];
    if (route) controllerRoutes.push({ controller, route });
  }
  return { links, addresses, routes, controllerRoutes };
}

/**
 * The JSON record at `path`, or undefined when there is none, or it is not a regular file (a symlink is not
 * followed, a FIFO never waited on), or it does not parse. Every reconcile pass asks for the move record, which
 * is almost never there: lstat(2) answers that from the dentry cache, synchronously and without an error object
 * (a readFile of an absent file cost an open on the thread pool and a thrown ENOENT: 5.8 % of the simulated
 * agents' CPU at 10,000 hosts).
 */
async function readJson<T>(path: string): Promise<T | undefined> {
  const at = lstatSync(path, { throwIfNoEntry: false });
  if (!at?.isFile()) return undefined;
  try {
    return JSON.parse(await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK })) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    // A torn or foreign file: treated as absent, and said so by the caller's result.
    return undefined;
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // mkdir's mode applies only to a directory it creates: an existing one is brought to 0700 too.
  if (((await stat(dirname(path))).mode & 0o777) !== 0o700) await chmod(dirname(path), 0o700);
  await writeOwned(path, JSON.stringify(value, null, 2) + "\n", 0o600);
}

/** The moves recorded by a pass that did not finish (a crash mid-move); undefined when none. */
export const readMoveRecord = (tools: Toolbox) => readJson<ManagementMove[]>(moveRecordPath(tools));
/** The move undone by an earlier lockout check; undefined when none. */
export const readFailedRecord = (tools: Toolbox) => readJson<FailedMove>(failedRecordPath(tools));
/** Written before the first command of a pass that moves the management address. */
export const writeMoveRecord = (tools: Toolbox, moves: ManagementMove[]) => writeJson(moveRecordPath(tools), moves);
/** Removes the move record once its moves are settled. */
export const clearMoveRecord = (tools: Toolbox) => rm(moveRecordPath(tools), { force: true });
/** Records a move undone by its lockout check (the guard refuses it again until the file is removed). */
export const writeFailedRecord = (tools: Toolbox, failed: FailedMove) => writeJson(failedRecordPath(tools), failed);

/** How the lockout check probes: attempts (one `ping -c 1 -W 1` each, at least 1 s apart). Default 10: about 10 s. */
export interface LockoutCheckOptions {
  attempts?: number;
}

/** What one lockout check found: `ok` when the target answered through the device. */
export interface LockoutCheck {
  ok: boolean;
  target?: string;
  attempts: number;
  ms: number;
  reason: string;
}

/**
 * The local lockout check: `move.target` (the default gateway, else the
 * controller) must answer an ICMP echo sent out of the bond (`ping -I`,
 * SO_BINDTODEVICE) within `attempts` tries. With no target to probe the move
 * is kept and said so.
 */
export async function lockoutCheck(move: ManagementMove, runner: Runner, tools: Toolbox, options: LockoutCheckOptions = {}, dev = move.bond): Promise<LockoutCheck> {
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  if (move.target === undefined) return { ok: true, attempts: 0, ms: 0, reason: "no default gateway nor controller to probe; the move is kept unchecked" };
  const attempts = options.attempts ?? 10;
  for (let i = 1; i <= attempts; i++) {
    const t0 = performance.now();
    const r = await runner.run({ argv: tools.ping("-n", "-c", "1", "-W", "1", "-I", dev, move.target), mutating: false }, { allowFailure: true });
    if (r.exitCode === 0) return { ok: true, target: move.target, attempts: i, ms: ms(), reason: `${move.target} answered through ${dev}` };
    const left = 1000 - (performance.now() - t0);
    if (left > 0 && i < attempts) await new Promise((res) => setTimeout(res, left));
  }
  return { ok: false, target: move.target, attempts, ms: ms(), reason: `${move.target} did not answer through ${dev} (${attempts} pings, ${Math.round(ms() / 1000)} s)` };
}

/**
 * Undoes a move (`ip -force -batch -`: every line is tried even after one
 * fails): the members released, the addresses back on the member, its
 * routes as they were. Returns ip's exit code and stderr (the caller checks
 * the effect by probing again).
 */
export async function undoMove(move: ManagementMove, runner: Runner, tools: Toolbox): Promise<{ exitCode: number; stderr: string }> {
  const lines = undoLines(move);
  const r = await runner.run(mutate(tools.ip("-force", "-batch", "-"), lines.map((l) => l.join(" ")).join("\n") + "\n"), { allowFailure: true });
  return { exitCode: r.exitCode, stderr: r.stderr.trim() };
}

/**
 * After the pass (or on the next start, when a record was left behind by a
 * crash): probes through the bond; on failure undoes the move and records it
 * as failed. The record of the move is removed either way. Returns one line
 * per move for the result.
 */
export async function settleMoves(
  moves: ManagementMove[],
  runner: Runner,
  tools: Toolbox,
  options: LockoutCheckOptions = {},
): Promise<{ move: ManagementMove; check: LockoutCheck; undone?: { exitCode: number; stderr: string }; back?: LockoutCheck }[]> {
  const out = [];
  for (const move of moves) {
    const check = await lockoutCheck(move, runner, tools, options);
    if (check.ok) {
      out.push({ move, check });
      continue;
    }
    const undone = await undoMove(move, runner, tools);
    await writeFailedRecord(tools, { bond: move.bond, member: move.member, address: move.address, at: new Date().toISOString(), reason: check.reason });
    // Probing through the member again also announces the address there: its ARP request makes the
    // gateway forget the bond's MAC it may have learnt meanwhile (Linux overrides a neighbour entry
    // from a request to its own address), else it would send to a MAC nobody holds until that
    // entry ages out (seconds on Linux, hours on many routers).
    const back = await lockoutCheck(move, runner, tools, { attempts: Math.min(3, options.attempts ?? 3) }, move.member);
    out.push({ move, check, undone, back });
  }
  await clearMoveRecord(tools);
  return out;
}
