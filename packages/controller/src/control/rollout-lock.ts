import type { KV } from "@nats-io/kv";
import { ROLLOUT_LOCK_KEY, ROLLOUT_STATE_KEY, decodeMessage, encodeMessage } from "@netfleet/shared";
import { z } from "zod";
import { compareAndSet, isRevisionConflict, liveValue } from "./kv-cas.ts";

const LockRecord = z.strictObject({ owner: z.string(), acquiredAt: z.string() });
export type LockRecord = z.output<typeof LockRecord>;

/** Proof of holding the lock: the KV revision it was created at. */
export interface RolloutLease extends LockRecord {
  revision: number;
}

/** Where a rollout stands, for `--resume`. */
export const RolloutState = z.strictObject({
  rolloutId: z.string(),
  owner: z.string(),
  phase: z.enum(["running", "paused", "done", "failed"]),
  startedAt: z.string(),
  updatedAt: z.string(),
  /** Hosts in wave order. */
  waves: z.array(z.array(z.string())),
  completed: z.array(z.string()),
  failed: z.array(z.string()),
  note: z.string().optional(),
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

  async acquire(owner: string): Promise<RolloutLease> {
    const record: LockRecord = { owner, acquiredAt: new Date().toISOString() };
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
    const entry = liveValue(await this.kv.get(ROLLOUT_LOCK_KEY));
    return entry ? decodeMessage(LockRecord, "rollout lock", entry.value) : undefined;
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
