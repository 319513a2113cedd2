import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import pRetry from "p-retry";
import type { HostAssignment, Report } from "@netfleet/shared";
import type { DesiredEntry } from "../store/desired.ts";
import { isTransient, withRetry } from "../store/kv.ts";
import { applyWaves } from "./apply.ts";
import { checkWaves } from "./check.ts";
import { diffAssignments, hostDiffStatus, type HostDiffStatus } from "./diff.ts";
import type { RolloutEvent, RolloutResult } from "./events.ts";
import { STORE_RETRY_MS, type RolloutStores } from "./stores.ts";
import { RolloutProgress } from "./progress.ts";
import { revert } from "./revert.ts";
import { RolloutAbort } from "./run.ts";
import { orderTargets, planWaves, resolveAmount, type Amount, type MaxPer } from "./waves.ts";
import { PlanStaleError, desiredMoved, type CheckedHost, type HostPlan } from "./planned.ts";
import { LockHeldError, LockLostError, type RolloutLease, type RolloutState } from "./state.ts";

/** A host to roll out to, with the assignment it is to get. */
export interface RolloutTarget {
  host: string;
  role: "backend" | "vmhost";
  assignment: HostAssignment;
  /** The host's inventory labels (for maxPer). */
  labels?: Readonly<Record<string, string>>;
  /**
   * Applying a plan file: the host's desired entry must still be at the plan's KV revision (else
   * PlanStaleError, nothing published), and its envelope carries the plan's observed-state hash.
   */
  plan?: HostPlan;
}

/** What the operator is asked to confirm before anything is published: the waves, the failure budget, the unchanged hosts. */
export interface RolloutSummary {
  waves: string[][];
  maxFail: number;
  unchanged: string[];
}

/** How a rollout runs; times in milliseconds. */
export interface RolloutOptions {
  /** Check mode: each host's agent says what it would change; nothing is published, no lock taken. */
  check?: boolean;
  /** Hosts per wave after the canary (default 25%, at least 1). */
  batch?: Amount;
  /** Hosts that may fail (verified) before the rollout stops and reverts (default 0). */
  maxFail?: Amount;
  /** Hosts applied at once within a wave (default: the whole wave). */
  parallel?: number;
  /** At most maxPer.count hosts with one value of label maxPer.key per wave (waves.ts MaxPer); absent: no such limit. */
  maxPer?: MaxPer;
  /** Continue the interrupted rollout of a dead controller (same inventory), taking over its stale lock. */
  resume?: boolean;
  /** Start anew over an interrupted rollout whose controller died (its lock stale); it is not resumed or reverted. */
  abandon?: boolean;
  /** How long a host has to report its verified result (default 180 s). */
  applyTimeoutMs?: number;
  /**
   * How long a host's report of success, once stored in the applied bucket, waits for its agent's confirmation
   * (the same report on the report subject, or a heartbeat of the revision) before the host fails as never
   * confirmed (default 40 s: the agent's 20 s confirmation deadline plus one 15 s heartbeat, and a margin).
   */
  confirmWindowMs?: number;
  /** --resume and --abandon take over a lock not renewed for this long (default 15 s). */
  lockStaleMs?: number;
  /** How often the running rollout renews its lock (default 3 s). */
  lockRenewMs?: number;
  /** Who holds the lock (default host:pid); the rollout id is appended. */
  owner?: string;
  /** Check mode for a plan file: a host whose agent sends no observed-state hash fails. */
  requireObserved?: boolean;
  /**
   * Asked after the diff, under the lock, before anything is written or published (not in check mode,
   * not on resume); false cancels the rollout (RolloutCancelledError).
   */
  confirm?: (summary: RolloutSummary) => Promise<boolean>;
}

/** The operator said no at the confirmation: nothing was published. */
export class RolloutCancelledError extends Error {
  constructor() {
    super("cancelled: nothing was published");
    this.name = "RolloutCancelledError";
  }
}

/** The inventory changed since the interrupted rollout: --resume would roll out something else. */
export class ResumeMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResumeMismatchError";
  }
}

/** How a rollout ended, with its final state (not in check mode, which keeps none); in check mode, the hosts that passed (for a plan file). */
export interface RolloutOutcome {
  result: RolloutResult;
  state?: RolloutState;
  checked?: CheckedHost[];
}

/** A host that needs this rollout: its target, what it has now, and the KV revision read (compare-and-set base). */
interface Todo {
  target: RolloutTarget;
  previous: { revision: number; hash: string } | null;
  basedOn: number;
  status: HostDiffStatus;
  /** The desired envelope carries a saved plan's observed hash: this rollout publishes its own revision whatever the document. */
  fresh: boolean;
}

/**
 * One rollout of a site: the per-host diff, then a canary and waves (backends
 * before VM hosts), each host published with compare-and-set and judged on
 * its verified report. Over the failure budget (or a failed canary) it stops
 * and reverts the hosts this rollout changed. Its state lives in KV beside
 * the lock, so `resume` continues where a dead controller stopped. `run`
 * throws LockHeldError (another rollout runs), ResumeMismatchError, a
 * LockLostError, or a failure of NATS beyond the retries.
 */
export class Rollout {
  private readonly stores: RolloutStores;
  private readonly targets: Map<string, RolloutTarget>;
  private readonly options: Required<Omit<RolloutOptions, "parallel" | "owner" | "confirm" | "maxPer">> & Pick<RolloutOptions, "parallel" | "confirm" | "maxPer"> & { owner: string };
  private readonly emit: (e: RolloutEvent) => void;
  private readonly abort = new RolloutAbort();
  private lease: RolloutLease | undefined;
  private progress: RolloutProgress | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  private readonly started = Date.now();
  private unchanged: string[] = [];

  constructor(stores: RolloutStores, targets: readonly RolloutTarget[], options: RolloutOptions, emit: (e: RolloutEvent) => void) {
    this.stores = stores;
    this.targets = new Map(targets.map((t) => [t.host, t]));
    this.options = {
      check: options.check ?? false,
      batch: options.batch ?? { percent: 25 },
      maxFail: options.maxFail ?? { count: 0 },
      resume: options.resume ?? false,
      abandon: options.abandon ?? false,
      applyTimeoutMs: options.applyTimeoutMs ?? 180_000,
      confirmWindowMs: options.confirmWindowMs ?? 40_000,
      lockStaleMs: options.lockStaleMs ?? 15_000,
      lockRenewMs: options.lockRenewMs ?? 3000,
      owner: options.owner ?? `${hostname()}:${process.pid}`,
      requireObserved: options.requireObserved ?? false,
      ...(options.parallel ? { parallel: options.parallel } : {}),
      ...(options.confirm ? { confirm: options.confirm } : {}),
      ...(options.maxPer ? { maxPer: options.maxPer } : {}),
    };
    this.emit = emit;
  }

  /** Runs the rollout (or its check) to the end; see the class for what it throws. */
  async run(): Promise<RolloutOutcome> {
    await this.stores.watchApplied();
    if (this.options.check) return this.runCheck();
    try {
      const progress = this.options.resume ? await this.resumeState() : await this.newState();
      this.renewTimer ??= setInterval(() => void this.renewLock(), this.options.lockRenewMs);
      const run = { stores: this.stores, progress, abort: this.abort, emit: this.emit, parallel: this.options.parallel, applyTimeoutMs: this.options.applyTimeoutMs, confirmWindowMs: this.options.confirmWindowMs };
      if (progress.state.phase === "running") await applyWaves({ ...run, targets: this.targets });
      if (progress.state.phase === "reverting") await revert(run);
      return { result: await this.finish(progress), state: progress.state };
    } catch (err) {
      // A state too large to write cannot be resumed: the rollout fails, and says so in its (small) header when it can.
      // Anything else (NATS gone for longer than the retries) leaves the state as it was, for --resume.
      const progress = this.progress;
      if (progress && this.abort.fatal && progress.tooLarge && !this.abort.lockLost) {
        progress.state.phase = "failed";
        progress.state.note = `stopped: ${(err as Error).message}`.slice(0, 2000);
        await progress.idle();
        await progress.saveHeaderOnly().catch(() => {});
      }
      throw err;
    } finally {
      clearInterval(this.renewTimer);
      await this.progress?.idle();
      if (this.lease && !this.abort.lockLost) await withRetry(() => this.stores.lock.release(this.lease!), STORE_RETRY_MS).catch(() => {});
    }
  }

  // ---- planning -------------------------------------------------------

  /**
   * Reads what each target host has now and emits its diff; returns those that need this rollout (in check mode: all).
   * @throws PlanStaleError when a planned host's desired entry is not at the plan's KV revision.
   */
  private async diffAll(): Promise<Todo[]> {
    const todo: Todo[] = [];
    const moved: string[] = [];
    const ordered = orderTargets([...this.targets.values()]);
    // Every host's desired entry in one pass over the bucket (a read per host, 32 at a time, when that fails);
    // applied reports from the applied watch. Emitted in order.
    const all = await withRetry(() => this.stores.desired.readAll(), STORE_RETRY_MS).catch(() => undefined);
    // 32 hosts read at once, a chunk at a time: not a pending read (and its closures) per host of a 10,000-host fleet at once.
    const CHUNK = 32;
    let chunk: { entry: DesiredEntry | undefined; applied: Report | undefined }[] = [];
    for (const [i, target] of ordered.entries()) {
      if (i % CHUNK === 0) {
        chunk = await Promise.all(
          ordered.slice(i, i + CHUNK).map(async (t) => ({
            entry: all ? all.get(t.host) : await withRetry(() => this.stores.desired.read(t.host), STORE_RETRY_MS),
            applied: await withRetry(() => this.stores.lastApplied(t.host), STORE_RETRY_MS).catch(() => undefined),
          })),
        );
      }
      const { entry, applied } = chunk[i % CHUNK]!;
      const current = entry?.envelope;
      const status = hostDiffStatus(current, applied, target.assignment.hash);
      const from = current ? { revision: current.revision, hash: current.assignment.hash } : null;
      this.emit({ event: "diff", host: target.host, role: target.role, status, from, to: target.assignment.hash, diff: diffAssignments(current?.assignment, target.assignment) });
      if (target.plan && (entry?.kvRevision ?? 0) !== target.plan.basedOn) moved.push(desiredMoved(target.host, entry?.kvRevision ?? 0, target.plan.basedOn));
      if (status === "unchanged" && !this.options.check) {
        this.unchanged.push(target.host);
        continue;
      }
      todo.push({ target, previous: from, basedOn: entry?.kvRevision ?? 0, status, fresh: current?.plan !== undefined });
    }
    if (moved.length) throw new PlanStaleError(moved);
    return todo;
  }

  /** The waves of `todo`, and the failure budget in hosts. */
  private plan(todo: readonly Todo[]): { waves: string[][]; maxFail: number } {
    const waves = planWaves(
      todo.map((t) => ({ host: t.target.host, role: t.target.role, ...(t.target.labels ? { labels: t.target.labels } : {}) })),
      resolveAmount(this.options.batch, todo.length, 1),
      this.options.maxPer ? { maxPer: this.options.maxPer } : {},
    );
    return { waves, maxFail: resolveAmount(this.options.maxFail, todo.length, 0) };
  }

  /** A new rollout: takes the lock (or, with `abandon`, a stale one over), diffs, plans, and writes its first state. */
  private async newState(): Promise<RolloutProgress> {
    const rolloutId = `${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}-${randomBytes(3).toString("hex")}`;
    const owner = `${this.options.owner}:${rolloutId}`;
    try {
      this.lease = await withRetry(
        () => (this.options.abandon ? this.stores.lock.takeOver(owner, this.options.lockStaleMs, rolloutId) : this.stores.lock.acquire(owner, rolloutId)),
        STORE_RETRY_MS,
      );
    } catch (err) {
      if (err instanceof LockHeldError) throw this.describeHolder(err);
      throw err;
    }
    // Renewed from here on: the diff and the operator's answer may take longer than the lock's staleness.
    this.renewTimer = setInterval(() => void this.renewLock(), this.options.lockRenewMs);
    const todo = await this.diffAll();
    const { waves, maxFail } = this.plan(todo);
    if (this.options.confirm && !(await this.options.confirm({ waves, maxFail, unchanged: this.unchanged }))) throw new RolloutCancelledError();
    const now = new Date().toISOString();
    // Only the header: its revision is the compare-and-set base; old host shards are read back when written over.
    const previous = await withRetry(() => this.stores.lock.loadState({ withHosts: false }), STORE_RETRY_MS);
    const state: RolloutState = {
      rolloutId,
      owner,
      phase: "running",
      startedAt: now,
      updatedAt: now,
      waves,
      completed: [],
      failed: [],
      maxFail,
      hosts: Object.fromEntries(todo.map((t) => [t.target.host, { role: t.target.role, target: t.target.assignment.hash, previous: t.previous, basedOn: t.basedOn, ...(t.fresh ? { fresh: true } : {}), status: "pending" as const }])),
    };
    const progress = this.start(state, previous);
    await progress.save();
    this.emit({ event: "rollout", rolloutId, site: this.stores.options.site, check: false, resume: false, waves, maxFail, unchanged: this.unchanged });
    return progress;
  }

  /** The holder's age in the refusal, and what to do when its controller looks dead. */
  private describeHolder(err: LockHeldError): LockHeldError {
    const h = err.holder;
    const age = h.renewedAt ? Math.round((Date.now() - Date.parse(h.renewedAt)) / 1000) : undefined;
    const dead = age !== undefined && age * 1000 >= this.options.lockStaleMs;
    return new LockHeldError({
      ...h,
      owner: `${h.owner}${age !== undefined ? `, last renewed ${age}s ago` : ""}${dead ? " — its controller looks dead: continue that rollout with --resume, or start over with --abandon" : ""}`,
    });
  }

  /** Continues the interrupted rollout: checks it brings the same assignments, waits for its lock to go stale and takes it over. */
  private async resumeState(): Promise<RolloutProgress> {
    const loaded = await withRetry(() => this.stores.lock.loadState(), STORE_RETRY_MS);
    if (!loaded || !loaded.state.hosts || !["running", "reverting"].includes(loaded.state.phase)) {
      throw new ResumeMismatchError(`nothing to resume: the last rollout of ${this.stores.options.site} is ${loaded ? loaded.state.phase : "absent"}`);
    }
    const st = loaded.state;
    for (const [host, p] of Object.entries(st.hosts!)) {
      const t = this.targets.get(host);
      if (!t) throw new ResumeMismatchError(`the interrupted rollout ${st.rolloutId} includes ${host}, which is not in this rollout (inventory or --limit changed)`);
      if (t.assignment.hash !== p.target) throw new ResumeMismatchError(`${host}: the inventory compiles to another assignment than the interrupted rollout ${st.rolloutId} brings; resume from the same inventory`);
    }
    const owner = `${this.options.owner}:${st.rolloutId}`;
    // The dead controller's lock: tried every second until it has not been renewed for lockStaleMs, then taken over with compare-and-set.
    const deadline = Date.now() + this.options.lockStaleMs + 5000;
    this.lease = await pRetry(() => withRetry(() => this.stores.lock.takeOver(owner, this.options.lockStaleMs, st.rolloutId), STORE_RETRY_MS), {
      retries: Infinity,
      factor: 1,
      minTimeout: 1000,
      randomize: false,
      onFailedAttempt: ({ error }) => {
        if (!(error instanceof LockHeldError) || error.holder.rolloutId !== st.rolloutId || Date.now() > deadline) throw error;
        this.emit({ event: "lock-wait", holder: error.holder.owner, renewedAt: error.holder.renewedAt });
      },
    });
    // Re-read after taking the lock: the old controller cannot write any more.
    const fresh = (await withRetry(() => this.stores.lock.loadState(), STORE_RETRY_MS))!;
    const progress = this.start({ ...fresh.state, owner, updatedAt: new Date().toISOString() }, fresh);
    await progress.save();
    this.emit({ event: "rollout", rolloutId: st.rolloutId, site: this.stores.options.site, check: false, resume: true, waves: st.waves, maxFail: st.maxFail ?? 0, unchanged: [] });
    return progress;
  }

  /** The progress of `state`, written on from the record `loaded` (undefined: none). */
  private start(state: RolloutState, loaded: Parameters<RolloutStores["rolloutStateWriter"]>[0]): RolloutProgress {
    this.progress = new RolloutProgress(state, this.stores.rolloutStateWriter(loaded), this.abort);
    return this.progress;
  }

  private async renewLock(): Promise<void> {
    // One renewal at a time: on a busy server one may take longer than the interval, and a second one on the
    // same lease revision would conflict with the first and be taken for a takeover.
    if (!this.lease || this.abort.lockLost || this.renewing) return;
    this.renewing = true;
    try {
      this.lease = await this.stores.lock.renew(this.lease);
    } catch (err) {
      if (err instanceof LockLostError) {
        this.abort.lockLost = err.message;
        this.emit({ event: "lock-lost", error: err.message });
      } else if (!isTransient(err)) {
        this.emit({ event: "lock-lost", error: (err as Error).message });
      }
    } finally {
      this.renewing = false;
    }
  }

  /** Ends the rollout: its final phase written, and the `done` event. */
  private async finish(progress: RolloutProgress): Promise<RolloutResult> {
    const { state } = progress;
    const reverting = state.phase === "reverting";
    const failed = progress.hosts("failed", "revert-failed", "not-reverted");
    const result: RolloutResult = reverting ? "failed" : failed.length > 0 ? "partial" : "success";
    state.phase = reverting ? "failed" : result === "partial" ? "partial" : "done";
    await progress.save();
    const failedHosts = reverting ? Object.entries(state.hosts ?? {}).filter(([, h]) => h.error !== undefined).map(([n]) => n) : failed;
    this.emit({
      event: "done",
      result,
      ok: progress.hosts("ok"),
      failed: failedHosts,
      reasons: Object.fromEntries(failedHosts.map((h) => [h, progress.host(h).error ?? `${progress.host(h).status} (no reason recorded)`])),
      reverted: progress.hosts("reverted"),
      skipped: progress.hosts("pending"),
      unchanged: this.unchanged,
      ms: Date.now() - this.started,
    });
    return result;
  }

  // ---- check mode -----------------------------------------------------

  /** The whole rollout in check mode: the same diff, canary and waves, each host asked what it would change. Nothing is published. */
  private async runCheck(): Promise<RolloutOutcome> {
    const todo = await this.diffAll();
    const { waves, maxFail } = this.plan(todo);
    this.emit({ event: "rollout", rolloutId: "check", site: this.stores.options.site, check: true, resume: false, waves, maxFail, unchanged: [] });
    const checked: CheckedHost[] = [];
    const byHost = new Map(todo.map((t) => [t.target.host, t]));
    const { ok, failed, reasons, stopped } = await checkWaves({
      stores: this.stores,
      targets: this.targets,
      waves,
      maxFail,
      parallel: this.options.parallel,
      abort: this.abort,
      emit: this.emit,
      applyTimeoutMs: this.options.applyTimeoutMs,
      requireObserved: this.options.requireObserved,
      onReply: (host, reply) => {
        const t = byHost.get(host)!;
        checked.push({ host, role: t.target.role, assignment: t.target.assignment, status: t.status, basedOn: t.basedOn, from: t.previous, reply });
      },
    });
    const skipped = todo.map((t) => t.target.host).filter((h) => !ok.includes(h) && !failed.includes(h));
    const result: RolloutResult = stopped ? "failed" : failed.length ? "partial" : "success";
    this.emit({ event: "done", result, ok, failed, reasons, reverted: [], skipped, unchanged: [], ms: Date.now() - this.started });
    // In wave order, as planned (replies come in as hosts answer).
    const order = new Map(waves.flat().map((h, i) => [h, i]));
    return { result, checked: checked.sort((a, b) => order.get(a.host)! - order.get(b.host)!) };
  }
}
