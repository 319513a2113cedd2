import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import PQueue from "p-queue";
import type { HostAssignment } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import type { HostRecord } from "../store/registry.ts";
import { StaleRevisionError } from "../store/desired.ts";
import { isTransient, withRetry } from "../store/kv.ts";
import { diffAssignments, hostDiffStatus, verdict } from "./diff.ts";
import type { RolloutEvent, RolloutResult } from "./events.ts";
import { orderTargets, planWaves, resolveAmount, type Amount } from "./waves.ts";
import { LockHeldError, LockLostError, StateTooLargeError, type HostProgress, type RolloutLease, type RolloutState, type RolloutStateWriter } from "./state.ts";

/** Kept for the package entry and main.ts until they import these from waves.ts, diff.ts and events.ts. */
export { orderTargets, parseAmount, planWaves, resolveAmount, type Amount } from "./waves.ts";
export { diffAssignments, type ResourceDiff } from "./diff.ts";
export type { RolloutEvent, RolloutResult } from "./events.ts";

export interface RolloutTarget {
  host: string;
  role: "backend" | "vmhost";
  assignment: HostAssignment;
}

export interface RolloutOptions {
  check?: boolean;
  /** Hosts per wave after the canary (default 25%, at least 1). */
  batch?: Amount;
  /** Hosts that may fail (verified) before the rollout stops and reverts (default 0). */
  maxFail?: Amount;
  /** Hosts applied at once within a wave (default: the whole wave). */
  parallel?: number;
  resume?: boolean;
  /** Start anew over an interrupted rollout whose controller died (its lock stale); it is not resumed or reverted. */
  abandon?: boolean;
  /** How long a host has to report its verified result. */
  applyTimeoutMs?: number;
  /** --resume takes over a lock not renewed for this long. */
  lockStaleMs?: number;
  lockRenewMs?: number;
  owner?: string;
}

/** The inventory changed since the interrupted rollout: --resume would roll out something else. */
export class ResumeMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResumeMismatchError";
  }
}

export interface RolloutOutcome {
  result: RolloutResult;
  state?: RolloutState;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A state write starts at least this long after the previous one started
 * (when one is already running; a save with none running starts at once).
 * Hosts finishing meanwhile share that next write: at 10,000 hosts, writes
 * back to back meant ~1,000 saves of ~10 shards of ~45 KB each per rollout.
 */
const SAVE_GAP_MS = 100;

/**
 * One rollout of a site: the per-host diff, then a canary and waves (backends
 * before VM hosts), each host published with compare-and-set and judged on
 * its verified report. Over the failure budget (or a failed canary) it stops
 * and reverts the hosts this rollout changed. Its state lives in KV beside
 * the lock, so `resume` continues where a dead controller stopped.
 */
export class Rollout {
  private readonly cp: ControlPlane;
  private readonly targets: Map<string, RolloutTarget>;
  private readonly options: Required<Omit<RolloutOptions, "parallel" | "owner">> & { parallel?: number; owner: string };
  private readonly emit: (e: RolloutEvent) => void;
  private lease: RolloutLease | undefined;
  private state!: RolloutState;
  private writer!: RolloutStateWriter;
  /** Hosts whose progress changed since the last write (only their shards are written). */
  private dirty = new Set<string>();
  /** A failure that ends the rollout (the lock lost, the state not writable): nothing more is applied. */
  private fatal: Error | undefined;
  private written = false;
  private fatalTooLarge = false;
  /** Hosts approved when the waves started (read in one pass, not once per host). */
  private approved: Map<string, HostRecord> | undefined;
  private saving: Promise<void> = Promise.resolve();
  private saveRunning: Promise<void> | undefined;
  private saveNext: Promise<void> | undefined;
  private saveStartedAt = 0;
  private lockLost: string | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private readonly started = Date.now();
  private unchanged: string[] = [];

  constructor(cp: ControlPlane, targets: readonly RolloutTarget[], options: RolloutOptions, emit: (e: RolloutEvent) => void) {
    this.cp = cp;
    this.targets = new Map(targets.map((t) => [t.host, t]));
    this.options = {
      check: options.check ?? false,
      batch: options.batch ?? { percent: 25 },
      maxFail: options.maxFail ?? { count: 0 },
      resume: options.resume ?? false,
      abandon: options.abandon ?? false,
      applyTimeoutMs: options.applyTimeoutMs ?? 180_000,
      lockStaleMs: options.lockStaleMs ?? 15_000,
      lockRenewMs: options.lockRenewMs ?? 3000,
      owner: options.owner ?? `${hostname()}:${process.pid}`,
      ...(options.parallel ? { parallel: options.parallel } : {}),
    };
    this.emit = emit;
  }

  async run(): Promise<RolloutOutcome> {
    await this.cp.watchApplied();
    if (this.options.check) return this.runCheck();
    try {
      if (this.options.resume) await this.resumeState();
      else await this.newState();
      this.renewTimer = setInterval(() => void this.renewLock(), this.options.lockRenewMs);
      if (this.state.phase === "running") await this.runWaves();
      if (this.state.phase === "reverting") await this.revert();
      return { result: await this.finish(), state: this.state };
    } catch (err) {
      // A state too large to write cannot be resumed: the rollout fails, and says so in its (small) header when it can.
      // Anything else (NATS gone for longer than the retries) leaves the state as it was, for --resume.
      if (this.fatal && this.fatalTooLarge && !this.lockLost) {
        this.state.phase = "failed";
        this.state.note = `stopped: ${(err as Error).message}`.slice(0, 2000);
        await this.saving.catch(() => {});
        if (this.state) await this.writer?.saveHeaderOnly(this.state).catch(() => {});
      }
      throw err;
    } finally {
      clearInterval(this.renewTimer);
      await this.saving.catch(() => {});
      if (this.lease && !this.lockLost) await withRetry(() => this.cp.releaseLock(this.lease!), 30_000).catch(() => {});
    }
  }

  // ---- planning -------------------------------------------------------

  /** Reads what each target host has now and emits its diff; returns those that need this rollout. */
  private async diffAll(): Promise<{ target: RolloutTarget; previous: { revision: number; hash: string } | null; basedOn: number }[]> {
    const todo = [];
    const ordered = orderTargets([...this.targets.values()]);
    // Every host's desired entry in one pass over the bucket (a read per host, 32 at a time, when that fails);
    // applied reports from the applied watch. Emitted in order.
    const all = await withRetry(() => this.cp.desired.readAll(), 30_000).catch(() => undefined);
    const reads = new PQueue({ concurrency: 32 });
    const read = ordered.map((t) =>
      reads.add(async () => ({
        entry: all ? all.get(t.host) : await withRetry(() => this.cp.desired.read(t.host), 30_000),
        applied: await withRetry(() => this.cp.lastApplied(t.host), 30_000).catch(() => undefined),
      })),
    );
    for (const [i, target] of ordered.entries()) {
      const { entry, applied } = (await read[i])!;
      const current = entry?.envelope;
      const status = hostDiffStatus(current, applied, target.assignment.hash);
      const from = current ? { revision: current.revision, hash: current.assignment.hash } : null;
      this.emit({ event: "diff", host: target.host, role: target.role, status, from, to: target.assignment.hash, diff: diffAssignments(current?.assignment, target.assignment) });
      if (status === "unchanged" && !this.options.check) {
        this.unchanged.push(target.host);
        continue;
      }
      todo.push({ target, previous: from, basedOn: entry?.kvRevision ?? 0 });
    }
    return todo;
  }

  private waveSize(total: number): number {
    return resolveAmount(this.options.batch, total, 1);
  }

  private async newState(): Promise<void> {
    const rolloutId = `${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}-${randomBytes(3).toString("hex")}`;
    const owner = `${this.options.owner}:${rolloutId}`;
    try {
      this.lease = await withRetry(
        () => (this.options.abandon ? this.cp.lock.takeOver(owner, this.options.lockStaleMs, rolloutId) : this.cp.lock.acquire(owner, rolloutId)),
        30_000,
      );
    } catch (err) {
      if (err instanceof LockHeldError) {
        const h = err.holder;
        const age = h.renewedAt ? Math.round((Date.now() - Date.parse(h.renewedAt)) / 1000) : undefined;
        throw new LockHeldError({
          ...h,
          owner: `${h.owner}${age !== undefined ? `, last renewed ${age}s ago` : ""}${age !== undefined && age * 1000 >= this.options.lockStaleMs ? " — its controller looks dead: continue that rollout with --resume, or start over with --abandon" : ""}`,
        });
      }
      throw err;
    }
    const todo = await this.diffAll();
    const waves = planWaves(todo.map((t) => ({ host: t.target.host, role: t.target.role })), this.waveSize(todo.length));
    const hosts: Record<string, HostProgress> = {};
    for (const t of todo) hosts[t.target.host] = { role: t.target.role, target: t.target.assignment.hash, previous: t.previous, basedOn: t.basedOn, status: "pending" };
    const now = new Date().toISOString();
    // Only the header: its revision is the compare-and-set base; old host shards are read back when written over.
    const previous = await withRetry(() => this.cp.loadRolloutState({ withHosts: false }), 30_000);
    this.writer = this.cp.rolloutStateWriter(previous);
    this.state = {
      rolloutId,
      owner,
      phase: "running",
      startedAt: now,
      updatedAt: now,
      waves,
      completed: [],
      failed: [],
      maxFail: resolveAmount(this.options.maxFail, todo.length, 0),
      hosts,
    };
    await this.save();
    this.emit({ event: "rollout", rolloutId, site: this.cp.options.site, check: false, resume: false, waves, maxFail: this.state.maxFail!, unchanged: this.unchanged });
  }

  private async resumeState(): Promise<void> {
    const loaded = await withRetry(() => this.cp.loadRolloutState(), 30_000);
    if (!loaded || !loaded.state.hosts || !["running", "reverting"].includes(loaded.state.phase)) {
      throw new ResumeMismatchError(`nothing to resume: the last rollout of ${this.cp.options.site} is ${loaded ? loaded.state.phase : "absent"}`);
    }
    const st = loaded.state;
    for (const [host, p] of Object.entries(st.hosts!)) {
      const t = this.targets.get(host);
      if (!t) throw new ResumeMismatchError(`the interrupted rollout ${st.rolloutId} includes ${host}, which is not in this rollout (inventory or --limit changed)`);
      if (t.assignment.hash !== p.target) throw new ResumeMismatchError(`${host}: the inventory compiles to another assignment than the interrupted rollout ${st.rolloutId} brings; resume from the same inventory`);
    }
    const owner = `${this.options.owner}:${st.rolloutId}`;
    // The dead controller's lock: wait until it has not been renewed for lockStaleMs, then take it over with compare-and-set.
    const deadline = Date.now() + this.options.lockStaleMs + 5000;
    for (;;) {
      try {
        this.lease = await withRetry(() => this.cp.lock.takeOver(owner, this.options.lockStaleMs, st.rolloutId), 30_000);
        break;
      } catch (err) {
        if (!(err instanceof LockHeldError) || err.holder.rolloutId !== st.rolloutId || Date.now() > deadline) throw err;
        this.emit({ event: "lock-wait", holder: err.holder.owner, renewedAt: err.holder.renewedAt });
        await sleep(1000);
      }
    }
    // Re-read after taking the lock: the old controller cannot write any more.
    const fresh = (await withRetry(() => this.cp.loadRolloutState(), 30_000))!;
    this.state = { ...fresh.state, owner, updatedAt: new Date().toISOString() };
    this.writer = this.cp.rolloutStateWriter(fresh);
    await this.save();
    this.emit({ event: "rollout", rolloutId: st.rolloutId, site: this.cp.options.site, check: false, resume: true, waves: st.waves, maxFail: st.maxFail ?? 0, unchanged: [] });
  }

  // ---- state ----------------------------------------------------------

  /**
   * Persists the state record (compare-and-set). Saves coalesce: while one
   * is written, all later callers share the single next write, which takes
   * the state as it is then — a wave of hundreds of hosts costs a handful
   * of writes, not two per host.
   */
  private save(...hosts: string[]): Promise<void> {
    for (const h of hosts) this.dirty.add(h);
    const write = async () => {
      if (this.fatal) throw this.fatal;
      if (this.lockLost) throw new LockLostError(this.lockLost);
      this.saveStartedAt = Date.now();
      this.state.updatedAt = new Date().toISOString();
      const dirty = this.dirty;
      this.dirty = new Set();
      try {
        // The first write of a state (new or resumed) writes every shard.
        await withRetry(() => this.writer.save(this.state, this.written ? dirty : undefined), 30_000);
        this.written = true;
      } catch (err) {
        for (const h of dirty) this.dirty.add(h);
        if (!(err instanceof LockLostError)) {
          this.fatalTooLarge ||= err instanceof StateTooLargeError;
          this.fatal ??= new Error(`cannot write the rollout state: ${(err as Error).message}`);
        }
        throw this.fatal ?? err;
      }
    };
    if (!this.saveRunning) {
      const run = write();
      this.saveRunning = run.catch(() => {}).then(() => {
        this.saveRunning = undefined;
      });
      this.saving = this.saveRunning;
      return run;
    }
    this.saveNext ??= this.saveRunning.then(async () => {
      const gap = SAVE_GAP_MS - (Date.now() - this.saveStartedAt);
      if (gap > 0) await sleep(gap);
      this.saveNext = undefined;
      return this.save();
    });
    this.saving = this.saveNext.catch(() => {});
    return this.saveNext;
  }

  private async renewLock(): Promise<void> {
    if (!this.lease || this.lockLost) return;
    try {
      this.lease = await this.cp.lock.renew(this.lease);
    } catch (err) {
      if (err instanceof LockLostError) {
        this.lockLost = err.message;
        this.emit({ event: "lock-lost", error: err.message });
      } else if (!isTransient(err)) {
        this.emit({ event: "lock-lost", error: (err as Error).message });
      }
    }
  }

  private host(host: string): HostProgress {
    return this.state.hosts![host]!;
  }

  private failedCount(): number {
    return Object.values(this.state.hosts!).filter((h) => h.status === "failed").length;
  }

  // ---- applying -------------------------------------------------------

  private async runWaves(): Promise<void> {
    const maxFail = this.state.maxFail ?? 0;
    const records = await withRetry(() => this.cp.registry.list(), 30_000).catch(() => []);
    this.approved = new Map(records.filter((r) => r.state === "approved").map((r) => [r.host, r]));
    for (const [index, wave] of this.state.waves.entries()) {
      const hosts = wave.filter((h) => ["pending", "applying"].includes(this.host(h).status));
      if (hosts.length === 0) continue;
      this.emit({ event: "wave", index, canary: index === 0, hosts });
      const queue = new PQueue({ concurrency: this.options.parallel ?? hosts.length });
      let stop = false;
      for (const host of hosts) {
        void queue
          .add(async () => {
            if (stop || this.lockLost || this.fatal) return;
            await this.applyHost(host);
            if (this.host(host).status === "failed" && (index === 0 || this.failedCount() > maxFail)) {
              stop = true;
              queue.clear();
            }
          })
          .catch(this.abortOn(queue));
      }
      await queue.onIdle();
      this.throwIfAborted();
      if (stop) {
        const failed = Object.entries(this.state.hosts!).filter(([, h]) => h.status === "failed").map(([n]) => n);
        this.emit({ event: "budget-exceeded", failed, maxFail, canary: index === 0 });
        this.state.phase = "reverting";
        this.state.note = index === 0 ? `canary ${failed.join(", ")} failed` : `${failed.length} hosts failed, budget ${maxFail}`;
        await this.save();
        return;
      }
    }
  }

  private async applyHost(host: string): Promise<void> {
    const started = Date.now();
    const p = this.host(host);
    const target = this.targets.get(host)!;
    try {
      if (p.status === "pending") {
        // Approved at the start of the rollout (one pass over the registry), or read now.
        const known = this.approved?.has(host) ? this.approved.get(host) : undefined;
        const record = known ?? (await withRetry(() => this.cp.registry.get(host), 30_000));
        if (record?.state !== "approved") throw new Error(record ? `not approved (${record.state}${record.reason ? `: ${record.reason}` : ""})` : "has not enrolled");
        let published;
        try {
          published = await this.cp.publish(target.assignment, { basedOn: p.basedOn });
        } catch (err) {
          if (err instanceof StaleRevisionError) throw new Error(`desired state changed since the diff (someone else published); rerun the rollout`);
          throw err;
        }
        p.status = "applying";
        p.revision = published.revision;
        await this.save(host);
      }
      this.emit({ event: "host-start", host, ...(p.revision ? { revision: p.revision } : {}) });
      const report = await this.cp.waitForApplied(host, p.revision!, this.options.applyTimeoutMs);
      const problem = verdict(report, p.revision!, target.assignment.hash);
      const failures = report.results.filter((r) => r.result === false).map((r) => ({ id: r.id, ...(r.comment ? { comment: r.comment } : {}) }));
      p.status = problem ? "failed" : "ok";
      if (problem) p.error = problem;
      await this.save(host);
      this.emit({ event: "host-done", host, ok: !problem, revision: p.revision!, summary: report.summary, failures, ...(problem ? { error: problem } : {}), ms: Date.now() - started });
    } catch (err) {
      if (err instanceof LockLostError || err === this.fatal) throw err;
      p.status = "failed";
      p.error = (err as Error).message;
      await this.save(host).catch(() => {});
      if (this.fatal) throw this.fatal;
      this.emit({ event: "host-done", host, ok: false, ...(p.revision ? { revision: p.revision } : {}), error: p.error, ms: Date.now() - started });
    }
  }

  /** Puts back the previous assignment of every host this rollout published to, and waits for it to be applied. */
  private async revert(): Promise<void> {
    const changed = Object.entries(this.state.hosts!).filter(([, h]) => h.revision !== undefined && ["ok", "failed", "applying", "reverting"].includes(h.status)).map(([n]) => n);
    this.emit({ event: "revert-start", hosts: changed });
    const queue = new PQueue({ concurrency: this.options.parallel ?? Math.max(1, changed.length) });
    for (const host of changed) {
      void queue.add(() => this.revertHost(host)).catch(this.abortOn(queue));
    }
    await queue.onIdle();
    this.throwIfAborted();
  }

  /**
   * A queued host task's error handler: only a LockLostError or a fatal error gets
   * here (anything else is a failed host); it is kept and the rest of the queue dropped.
   */
  private abortOn(queue: PQueue): (err: unknown) => void {
    return (err) => {
      if (err instanceof LockLostError) this.lockLost ??= err.message;
      else this.fatal ??= err as Error;
      queue.clear();
    };
  }

  private throwIfAborted(): void {
    if (this.lockLost) throw new LockLostError(this.lockLost);
    if (this.fatal) throw this.fatal;
  }

  private async revertHost(host: string): Promise<void> {
    const p = this.host(host);
    try {
      if (!p.previous) {
        p.status = "not-reverted";
        p.error = "no previous assignment to go back to (first rollout to this host); it keeps the new one";
        await this.save(host);
        this.emit({ event: "host-reverted", host, ok: false, error: p.error });
        return;
      }
      if (p.status !== "reverting" || p.revertRevision === undefined) {
        const previous = await withRetry(() => this.cp.desired.atRevision(host, p.previous!.revision), 30_000);
        if (!previous) throw new Error(`revision ${p.previous.revision} is no longer in the desired history`);
        const published = await this.cp.publish(previous.assignment);
        p.status = "reverting";
        p.revertRevision = published.revision;
        await this.save(host);
      }
      const report = await this.cp.waitForApplied(host, p.revertRevision!, this.options.applyTimeoutMs);
      const problem = verdict(report, p.revertRevision!, p.previous.hash);
      p.status = problem ? "revert-failed" : "reverted";
      if (problem) p.error = `revert: ${problem}`;
      await this.save(host);
      this.emit({ event: "host-reverted", host, ok: !problem, revision: p.revertRevision!, ...(problem ? { error: problem } : {}) });
    } catch (err) {
      if (err instanceof LockLostError || err === this.fatal) throw err;
      p.status = "revert-failed";
      p.error = `revert: ${(err as Error).message}`;
      await this.save(host).catch(() => {});
      if (this.fatal) throw this.fatal;
      this.emit({ event: "host-reverted", host, ok: false, error: p.error });
    }
  }

  private async finish(): Promise<RolloutResult> {
    const hosts = Object.entries(this.state.hosts ?? {});
    const names = (...s: HostProgress["status"][]) => hosts.filter(([, h]) => s.includes(h.status)).map(([n]) => n);
    const reverting = this.state.phase === "reverting";
    const failed = names("failed", "revert-failed", "not-reverted");
    const result: RolloutResult = reverting ? "failed" : failed.length > 0 ? "partial" : "success";
    this.state.phase = reverting ? "failed" : result === "partial" ? "partial" : "done";
    await this.save();
    this.emit({
      event: "done",
      result,
      ok: names("ok"),
      failed: reverting ? hosts.filter(([, h]) => h.error !== undefined).map(([n]) => n) : failed,
      reverted: names("reverted"),
      skipped: names("pending"),
      unchanged: this.unchanged,
      ms: Date.now() - this.started,
    });
    return result;
  }

  // ---- check mode -----------------------------------------------------

  /** The whole rollout in check mode: the same diff, canary and waves, each host asked what it would change. Nothing is published. */
  private async runCheck(): Promise<RolloutOutcome> {
    const todo = await this.diffAll();
    const waves = planWaves(todo.map((t) => ({ host: t.target.host, role: t.target.role })), this.waveSize(todo.length));
    const maxFail = resolveAmount(this.options.maxFail, todo.length, 0);
    this.emit({ event: "rollout", rolloutId: "check", site: this.cp.options.site, check: true, resume: false, waves, maxFail, unchanged: [] });
    const ok: string[] = [];
    const failed: string[] = [];
    let stopped = false;
    for (const [index, wave] of waves.entries()) {
      this.emit({ event: "wave", index, canary: index === 0, hosts: wave });
      const queue = new PQueue({ concurrency: this.options.parallel ?? wave.length });
      for (const host of wave) {
        void queue.add(async () => {
          if (stopped) return;
          const started = Date.now();
          this.emit({ event: "host-start", host });
          try {
            const reply = await this.cp.check(this.targets.get(host)!.assignment, this.options.applyTimeoutMs);
            const failures = reply.results.filter((r) => r.result === false).map((r) => ({ id: r.id, ...(r.comment ? { comment: r.comment } : {}) }));
            const wouldChange = reply.results.filter((r) => r.result === null).map((r) => ({ id: r.id, fields: r.changes ?? [] }));
            const good = reply.ok && failures.length === 0;
            (good ? ok : failed).push(host);
            this.emit({ event: "host-done", host, ok: good, summary: reply.summary, failures, wouldChange, ...(reply.error ? { error: reply.error } : {}), ms: Date.now() - started });
          } catch (err) {
            failed.push(host);
            const msg = /no responders|503/i.test((err as Error).message) ? "agent not connected (no answer to the check request)" : (err as Error).message;
            this.emit({ event: "host-done", host, ok: false, error: msg, ms: Date.now() - started });
          }
          if (failed.length > 0 && (index === 0 || failed.length > maxFail)) {
            stopped = true;
            queue.clear();
          }
        });
      }
      await queue.onIdle();
      if (stopped) {
        this.emit({ event: "budget-exceeded", failed: [...failed], maxFail, canary: index === 0 });
        break;
      }
    }
    const skipped = todo.map((t) => t.target.host).filter((h) => !ok.includes(h) && !failed.includes(h));
    const result: RolloutResult = stopped ? "failed" : failed.length ? "partial" : "success";
    this.emit({ event: "done", result, ok, failed, reverted: [], skipped, unchanged: [], ms: Date.now() - this.started });
    return { result };
  }
}
