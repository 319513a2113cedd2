import { resourceId, type ResourceSpec } from "@netfleet/shared";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { displayCommand, type Builtin, type Runner } from "./exec/runner.ts";
import { handlerFor } from "./resources/index.ts";
import { hostChangedComment, observedHash } from "./resources/observed-hash.ts";
import type { HostAccess, ObserveContext, PlanContext, ResourceHandler, ResourcePlan, ResourceResult } from "./resources/types.ts";
import type { Toolbox } from "./tools.ts";
import { disruptionRefusal, disruptions } from "./resources/management-disruption.ts";
import { guardPlan, type GuardDecision } from "./resources/management-guard.ts";
import {
  failedRecordPath,
  observeManagement,
  readFailedRecord,
  readMoveRecord,
  settleMoves,
  writeMoveRecord,
  type LockoutCheckOptions,
} from "./resources/management-move.ts";
import { writeOwned } from "./write-owned.ts";

/** How a reconcile pass runs: its runner and paths, check mode, and the management guard's inputs. */
export interface ReconcileOptions {
  runner: Runner;
  tools: Toolbox;
  /** Owner marker value (the site). */
  owner: string;
  /** Check mode: observe and plan, run no mutating command. */
  check?: boolean;
  /** Files, directories and processes as observed; this host's own by default (see `localHost`). */
  host?: HostAccess;
  /**
   * Controller addresses (IPv4; fleet mode: its NATS servers): the link of
   * the route towards each holds the management path too (management guard).
   */
  controllers?: readonly string[];
  /** The management move's lockout check (attempts, about 1 s each; default 10). */
  lockout?: LockoutCheckOptions;
  /**
   * The observed-state hash a plan was made against (a check pass's
   * `observed`, see observedHash): when the host's differs, nothing runs
   * and the pass is one failed result `plan` whose comment says "host
   * changed since the plan (observed X, plan made against Y)".
   */
  expectObserved?: string;
  /** Told the pass's observed-state hash once every resource was observed, before anything runs. */
  onObserved?: (observed: string) => void;
  /** Kept by a daemon from pass to pass: what handlers learnt of the host (ObserveContext.carry). */
  carry?: Map<string, unknown>;
}

/** A pass's results and the hash of what it observed before it ran anything (observedHash: sha256 hex). */
export interface PassOutcome {
  results: ResourceResult[];
  observed: string;
}

const missingAsUndefined = (err: NodeJS.ErrnoException): undefined => {
  if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
  throw err;
};

/** The host the agent runs on: its files and /proc. */
export const localHost: HostAccess = {
  readFile: (path) => readFile(path, "utf8").catch(missingAsUndefined),
  listDir: (path) => readdir(path).then((names) => names.sort(), missingAsUndefined),
  processArgv,
};

/**
 * Reads are memoised for one pass: resources of a kind share one
 * `ip -json link` or one `ovs-vsctl list`. Any mutation forgets them all.
 */
class ObservationCache {
  private readonly memo = new Map<string, Promise<{ stdout: string; exitCode: number; stderr: string }>>();
  private readonly runner: Runner;
  constructor(runner: Runner) {
    this.runner = runner;
  }
  read(argv: string[], options: { allowFailure?: boolean } = {}) {
    const key = JSON.stringify([argv, options.allowFailure ?? false]);
    let hit = this.memo.get(key);
    if (!hit) {
      hit = this.runner.run({ argv, mutating: false }, options);
      this.memo.set(key, hit);
      hit.catch(() => this.memo.delete(key));
    }
    return hit;
  }
  clear(): void {
    this.memo.clear();
  }
}

/**
 * Level-based reconcile: for each resource in order, observe → plan →
 * (apply → observe again, which must give an empty plan). A failure of one
 * resource does not stop the others; each gets its own result.
 */
export async function reconcile(resources: readonly ResourceSpec[], options: ReconcileOptions): Promise<ResourceResult[]> {
  return (await reconcilePass(resources, options)).results;
}

/**
 * reconcile, with the hash of the observation every resource was planned
 * on (the observed-state hash a plan file records; with
 * `options.expectObserved` the pass runs only when it is still the same).
 */
export async function reconcilePass(resources: readonly ResourceSpec[], options: ReconcileOptions): Promise<PassOutcome> {
  const cache = new ObservationCache(options.runner);
  const host = options.host ?? localHost;
  const ctx: ObserveContext = {
    owner: options.owner,
    tools: options.tools,
    read: (argv, o) => cache.read(argv, o),
    readFile: (path) => host.readFile(path),
    listDir: (path) => host.listDir(path),
    processArgv: (pid) => host.processArgv(pid),
    ...(options.carry ? { carry: options.carry } : {}),
  };
  const results: ResourceResult[] = [];
  // A move record left by a crash is settled before anything is observed (it is not the plan's doing).
  if (!options.check) await settleLeftMoves(options);
  // Every resource is observed at once up front (reads only, shared through the cache): on a
  // converged host that is the whole pass. Once something was applied, later resources are
  // observed again, as what they saw may have changed, unless their handler says the applied
  // resources leave their observation as it was (one bridge's rules do not change another's).
  const early = resources.map((spec) => {
    const p = handlerFor(spec).observe(spec, ctx);
    p.catch(() => undefined); // awaited below, in order
    return p;
  });
  const observed = observedHash(resources, await Promise.allSettled(early));
  options.onObserved?.(observed);
  if (options.expectObserved !== undefined && options.expectObserved !== observed) {
    const comment = hostChangedComment(observed, options.expectObserved);
    return { observed, results: [{ id: "plan", result: false, changed: false, changes: {}, commands: [], comment, durationMs: 0 }] };
  }
  const guard = await managementGuard(resources, options, ctx);
  const appliedSpecs: ResourceSpec[] = [];
  for (const [i, spec] of resources.entries()) {
    const started = performance.now();
    const id = resourceId(spec);
    const handler = handlerFor(spec);
    const result: ResourceResult = { id, result: true, changed: false, changes: {}, commands: [], comment: "", durationMs: 0 };
    try {
      const refused = guard?.blocked.get(id);
      if (refused !== undefined) {
        // The management guard: nothing of it runs, in check mode as well.
        result.result = false;
        result.comment = refused;
        result.durationMs = Math.round((performance.now() - started) * 10) / 10;
        results.push(result);
        continue;
      }
      const stale = appliedSpecs.some((a) => !(handler.unaffectedBy?.(spec as never, a) ?? false));
      const observed = stale ? await handler.observe(spec, ctx) : await early[i]!;
      const plan = handler.plan(spec, observed, ctx);
      result.changes = plan.changes;
      result.commands = plan.commands.map(displayCommand);
      if (plan.diff) result.diff = plan.diff;
      // The management guard, second half: a plan that takes down, releases the members of,
      // changes the mode of or deletes a link holding the management path does not run.
      const refusal = plan.blocked ? undefined : await disruptionGuard(plan, options, ctx, guard?.moves.get(id)?.member);
      if (refusal !== undefined) {
        result.result = false;
        result.comment = refusal;
      } else if (plan.blocked || plan.commands.length === 0 || options.check) {
        Object.assign(result, unapplied(plan));
      } else {
        appliedSpecs.push(spec);
        if (plan.lifecycle) result.lifecycle = true;
        await applyPlan(plan, options.runner, host);
        cache.clear();
        result.changed = true;
        const again = await readBack(handler, spec, ctx, () => cache.clear());
        if (again.blocked || again.commands.length > 0) {
          result.result = false;
          result.comment = `still differs after apply: ${again.blocked ?? Object.keys(again.changes).join(", ")}`;
        } else {
          // A plan's note (e.g. the drift it found) goes into the result, and so into the report.
          result.comment = plan.comment ? `changed; ${plan.comment}` : "changed";
        }
      }
    } catch (err) {
      cache.clear();
      result.result = false;
      result.error = err instanceof Error ? err.message : String(err);
      result.comment = err instanceof Error ? err.name : "error";
    }
    result.durationMs = Math.round((performance.now() - started) * 10) / 10;
    results.push(result);
  }
  if (guard && guard.moves.size > 0 && !options.check) await settleAfterPass(guard, results, options);
  return { results, observed };
}

/** The read-back pass between two re-reads while a handler's status columns settle (see ResourceHandler.settleMs). */
const SETTLE_STEP_MS = 100;

/**
 * The plan on a fresh observation after an apply: the empty plan as soon as
 * the host reads as wanted; otherwise re-read every SETTLE_STEP_MS until the
 * handler's `settleMs` is spent (bounded: at most settleMs / 100 + 1 reads),
 * and the last plan. `forget` drops the pass's memoised reads before each
 * re-read. Throws what observe throws.
 */
async function readBack(handler: ResourceHandler, spec: ResourceSpec, ctx: ObserveContext, forget: () => void): Promise<ResourcePlan> {
  let plan = handler.plan(spec, await handler.observe(spec, ctx), ctx);
  for (let waited = 0; (plan.blocked || plan.commands.length > 0) && waited < (handler.settleMs ?? 0); waited += SETTLE_STEP_MS) {
    await new Promise((r) => setTimeout(r, SETTLE_STEP_MS));
    forget();
    plan = handler.plan(spec, await handler.observe(spec, ctx), ctx);
  }
  return plan;
}

/** The result of a plan that is not applied: refused (false), nothing to do (true) or would change (null). */
function unapplied(plan: ResourcePlan): Pick<ResourceResult, "result" | "comment"> {
  if (plan.blocked) return { result: false, comment: plan.blocked };
  if (plan.commands.length === 0) return { result: true, comment: plan.comment ?? "in desired state" };
  return { result: null, comment: "would change (check mode)" };
}

/**
 * Check mode on a freshly installed host, with no host to read: each
 * resource planned on its handler's `absent` observation, in order. What
 * `netfleet plan` shows as a first apply. Nothing holds a management path
 * on such a host, so the management guard refuses nothing.
 */
export function planAbsent(resources: readonly ResourceSpec[], ctx: PlanContext): ResourceResult[] {
  return resources.map((spec) => {
    const handler = handlerFor(spec);
    const plan = handler.plan(spec, handler.absent(spec), ctx);
    return { id: resourceId(spec), changed: false, changes: plan.changes, commands: plan.commands.map(displayCommand), durationMs: 0, ...(plan.diff ? { diff: plan.diff } : {}), ...unapplied(plan) };
  });
}

/** A move record left by a crash: probed through the bond, undone if the path is dead (before anything else of an apply). */
async function settleLeftMoves(options: ReconcileOptions): Promise<void> {
  const left = await readMoveRecord(options.tools);
  if (left && left.length > 0) await settleMoves(left, options.runner, options.tools, options.lockout);
}

/**
 * Before any command of the pass (a move left by a crash already
 * settled): the guard decides what may not run and which bonds move the
 * management address, and the moves are recorded in the state dir.
 * Nothing is read of the host when no resource enslaves a link.
 */
async function managementGuard(resources: readonly ResourceSpec[], options: ReconcileOptions, ctx: ObserveContext): Promise<GuardDecision | undefined> {
  if (!resources.some(enslavesLink)) return undefined;
  let view;
  try {
    view = await observeManagement(ctx, options.controllers ?? []);
  } catch (err) {
    // Check mode runs nothing: it plans on. An apply that cannot see the management path
    // enslaves nothing (fail closed).
    if (options.check) return undefined;
    const why = `not applied: the management path could not be read (${err instanceof Error ? err.message : String(err)}), and this resource enslaves a link`;
    const blocked = new Map(resources.filter((r) => enslavesLink(r)).map((r) => [resourceId(r), why] as const));
    return { blocked, moves: new Map() };
  }
  const failed = await readFailedRecord(options.tools);
  const decision = guardPlan(resources, view, { ...(failed ? { failed } : {}), failedFile: failedRecordPath(options.tools) });
  if (decision.moves.size > 0 && !options.check) await writeMoveRecord(options.tools, [...decision.moves.values()]);
  return decision;
}

/**
 * Why a plan may not run because of what it does to a link holding the
 * management path (read now: an earlier resource of the pass may have moved
 * it); undefined when it may, or when it touches no link that way.
 */
async function disruptionGuard(plan: ResourcePlan, options: ReconcileOptions, ctx: ObserveContext, exempt: string | undefined): Promise<string | undefined> {
  const ops = disruptions(plan.commands);
  if (ops.length === 0) return undefined;
  try {
    return disruptionRefusal(ops, await observeManagement(ctx, options.controllers ?? []), exempt);
  } catch (err) {
    if (options.check) return undefined;
    return `not applied: the management path could not be read (${err instanceof Error ? err.message : String(err)}), and this plan takes a link down, releases or deletes one`;
  }
}

function enslavesLink(r: ResourceSpec): boolean {
  return r.kind === "kernel-bond" || (r.kind === "ovs-bridge" && r.ports.some((p) => p.type === "system" || p.type === "bond"));
}

/** After the pass: the lockout check of each move its bond ran; a dead path is undone and the bond's result says so. */
async function settleAfterPass(guard: GuardDecision, results: ResourceResult[], options: ReconcileOptions): Promise<void> {
  const ran = [...guard.moves.entries()].filter(([id]) => results.some((r) => r.id === id && (r.changed || r.error !== undefined)));
  const settled = await settleMoves(ran.map(([, m]) => m), options.runner, options.tools, options.lockout);
  for (const { move, check, undone, back } of settled) {
    const r = results.find((x) => x.id === resourceId({ kind: "kernel-bond", name: move.bond }));
    if (!r) continue;
    if (check.ok) {
      r.comment = `${r.comment}; moved ${move.addresses.join(", ")} and ${move.routes.length} route(s) from ${move.member} onto ${move.bond}; lockout check: ${check.reason} (${check.attempts} ping(s), ${check.ms} ms)`;
    } else {
      r.result = false;
      r.comment = `moved ${move.addresses.join(", ")} from ${move.member} onto ${move.bond}, then undone: ${check.reason}; ${move.addresses.join(", ")} and the routes are back on ${move.member}${undone && undone.exitCode !== 0 ? ` (undo: ip exited ${undone.exitCode}: ${undone.stderr.split("\n").slice(-2).join(" / ")})` : ""}${back ? `; ${back.ok ? `${back.reason} again` : back.reason}` : ""}`;
    }
  }
}

async function applyPlan(plan: ResourcePlan, runner: Runner, host: HostAccess): Promise<void> {
  for (const command of plan.commands) {
    if (command.builtin) await performBuiltin(command.builtin, host);
    else await runner.run(command);
  }
}

async function performBuiltin(step: Builtin, host: HostAccess): Promise<void> {
  if (step.op === "write-file") {
    // Atomic (a temporary file beside it, renamed): a reader never sees half a file.
    await mkdir(dirname(step.path), { recursive: true });
    await writeOwned(step.path, step.content, 0o644);
    return;
  }
  if (step.op === "remove-file") {
    // Already gone is fine; a directory is refused (never recursive).
    await rm(step.path, { force: true });
    return;
  }
  const deadline = performance.now() + step.timeoutMs;
  while ((await host.processArgv(step.pid)) !== undefined) {
    if (performance.now() > deadline) throw new Error(`pid ${step.pid} did not exit within ${step.timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A live process's argv from /proc/<pid>/cmdline; undefined when no such process runs (or it is a zombie). */
export async function processArgv(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const status = await readFile(`/proc/${pid}/stat`, "utf8");
    // A zombie has exited; only its parent has not reaped it yet.
    if (/^\d+ \(.*\) Z /.test(status)) return undefined;
    return raw.split("\0").filter(Boolean);
  } catch {
    return undefined;
  }
}

/** Counts of a pass's results: in desired state (result true), changed, failed (false), pending (null, check mode). */
export function summarize(results: readonly ResourceResult[]): { ok: number; changed: number; failed: number; pending: number } {
  return {
    ok: results.filter((r) => r.result === true).length,
    changed: results.filter((r) => r.changed).length,
    failed: results.filter((r) => r.result === false).length,
    pending: results.filter((r) => r.result === null).length,
  };
}
