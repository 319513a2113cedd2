import type { KV } from "@nats-io/kv";
import { ROLLOUT_LOCK_KEY, ROLLOUT_STATE_KEY, decodeMessage, encodeMessage } from "@netfleet/shared";
import { z } from "zod";
import { compareAndSet, isRevisionConflict, liveValue } from "./kv-cas.ts";

const LockRecord = z.strictObject({
  owner: z.string(),
  acquiredAt: z.string(),
  /** The holder renews the lock while it runs; a lock not renewed for a while belongs to a dead controller. */
  renewedAt: z.string().optional(),
  rolloutId: z.string().optional(),
});
export type LockRecord = z.output<typeof LockRecord>;

/** Proof of holding the lock: the KV revision it was created at. */
export interface RolloutLease extends LockRecord {
  revision: number;
}

export const HostProgress = z.strictObject({
  role: z.enum(["backend", "vmhost"]),
  /** Content hash of the assignment this rollout brings. */
  target: z.string(),
  /** What was desired before (to revert to); null when the host had no assignment. */
  previous: z.strictObject({ revision: z.number().int(), hash: z.string() }).nullable(),
  /** KV revision of the desired key when the rollout read it (compare-and-set base of the publish). */
  basedOn: z.number().int(),
  status: z.enum(["pending", "applying", "ok", "failed", "reverting", "reverted", "revert-failed", "not-reverted"]),
  /** Assignment revision published by this rollout (set from "applying" on). */
  revision: z.number().int().optional(),
  revertRevision: z.number().int().optional(),
  error: z.string().optional(),
});
export type HostProgress = z.output<typeof HostProgress>;

/** Where a rollout stands, for `--resume`. */
export const RolloutState = z.strictObject({
  rolloutId: z.string(),
  owner: z.string(),
  phase: z.enum(["running", "paused", "reverting", "done", "partial", "failed"]),
  startedAt: z.string(),
  updatedAt: z.string(),
  /** Hosts in wave order. */
  waves: z.array(z.array(z.string())),
  completed: z.array(z.string()),
  failed: z.array(z.string()),
  note: z.string().optional(),
  /** Failure budget as an absolute number of hosts. */
  maxFail: z.number().int().min(0).optional(),
  hosts: z.record(z.string(), HostProgress).optional(),
});
export type RolloutState = z.output<typeof RolloutState>;

export class LockHeldError extends Error {
  readonly holder: LockRecord;
  constructor(holder: LockRecord) {
    super(`rollout lock is held by ${holder.owner} since ${holder.acquiredAt}`);
    this.name = "LockHeldError";
    this.holder = holder;
  }
}

export class LockLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LockLostError";
  }
}

/** One rollout at a time per site: the lock is a KV key created with compare-and-set. */
export class RolloutLock {
  private readonly kv: KV;
  constructor(kv: KV) {
    this.kv = kv;
  }

  async acquire(owner: string, rolloutId?: string): Promise<RolloutLease> {
    const now = new Date().toISOString();
    const record: LockRecord = { owner, acquiredAt: now, renewedAt: now, ...(rolloutId ? { rolloutId } : {}) };
    try {
      const revision = await this.kv.create(ROLLOUT_LOCK_KEY, encodeMessage(record));
      return { ...record, revision };
    } catch (err) {
      if (!isRevisionConflict(err)) throw err;
      const holder = await this.holder();
      throw new LockHeldError(holder ?? { owner: "(unknown)", acquiredAt: "(unknown)" });
    }
  }

  async holder(): Promise<LockRecord | undefined> {
    return (await this.current())?.record;
  }

  async current(): Promise<{ record: LockRecord; revision: number } | undefined> {
    const entry = liveValue(await this.kv.get(ROLLOUT_LOCK_KEY));
    return entry ? { record: decodeMessage(LockRecord, "rollout lock", entry.value), revision: entry.revision } : undefined;
  }

  /** Keeps the lease alive (compare-and-set); a lease someone took over throws LockLostError. */
  async renew(lease: RolloutLease): Promise<RolloutLease> {
    const record: LockRecord = { owner: lease.owner, acquiredAt: lease.acquiredAt, renewedAt: new Date().toISOString(), ...(lease.rolloutId ? { rolloutId: lease.rolloutId } : {}) };
    try {
      const revision = await this.kv.update(ROLLOUT_LOCK_KEY, encodeMessage(record), lease.revision);
      return { ...record, revision };
    } catch (err) {
      if (isRevisionConflict(err)) throw new LockLostError(`rollout lock of ${lease.owner} was taken over`);
      throw err;
    }
  }

  /**
   * Takes over a lock whose holder stopped renewing it `staleMs` ago (a
   * controller that died mid-rollout), with compare-and-set: of two
   * controllers taking over at once, one wins. A live holder is refused.
   */
  async takeOver(owner: string, staleMs: number, rolloutId?: string): Promise<RolloutLease> {
    const held = await this.current();
    if (!held) return this.acquire(owner, rolloutId);
    const last = Date.parse(held.record.renewedAt ?? held.record.acquiredAt);
    if (Date.now() - last < staleMs) throw new LockHeldError(held.record);
    const now = new Date().toISOString();
    const record: LockRecord = { owner, acquiredAt: now, renewedAt: now, ...(rolloutId ? { rolloutId } : {}) };
    try {
      const revision = await this.kv.update(ROLLOUT_LOCK_KEY, encodeMessage(record), held.revision);
      return { ...record, revision };
    } catch (err) {
      if (isRevisionConflict(err)) throw new LockHeldError((await this.holder()) ?? held.record);
      throw err;
    }
  }

  /** Deletes the lock only if it is still the one this lease created. */
  async release(lease: RolloutLease): Promise<void> {
    try {
      await this.kv.delete(ROLLOUT_LOCK_KEY, { previousSeq: lease.revision });
    } catch (err) {
      if (isRevisionConflict(err)) throw new LockLostError(`rollout lock of ${lease.owner} was taken over or already released`);
      throw err;
    }
  }

  /** Operator override for a lock whose holder died. */
  async breakLock(): Promise<void> {
    await this.kv.delete(ROLLOUT_LOCK_KEY);
  }

  async loadState(): Promise<{ state: RolloutState; revision: number } | undefined> {
    const entry = liveValue(await this.kv.get(ROLLOUT_STATE_KEY));
    return entry ? { state: decodeMessage(RolloutState, "rollout state", entry.value), revision: entry.revision } : undefined;
  }

  /** Compare-and-set on the state record: `lastRevision` is what `loadState` (or the previous save) returned; 0 for a new record. */
  async saveState(state: RolloutState, lastRevision: number): Promise<number> {
    try {
      return await compareAndSet(this.kv, ROLLOUT_STATE_KEY, encodeMessage(RolloutState.parse(state)), lastRevision);
    } catch (err) {
      if (isRevisionConflict(err)) throw new LockLostError("rollout state was changed by someone else");
      throw err;
    }
  }
}
