import PQueue from "p-queue";
import { withRetry } from "../store/kv.ts";
import { STORE_RETRY_MS } from "./stores.ts";
import type { RolloutAbort } from "./run.ts";
import { LockLostError, StateTooLargeError, type HostProgress, type RolloutState, type RolloutStateWriter } from "./state.ts";

/**
 * A state write starts at least this long after the previous one started
 * (when one is already running; a save with none running starts at once).
 * Hosts finishing meanwhile share that next write: at 10,000 hosts, writes
 * back to back meant ~1,000 saves of ~10 shards of ~45 KB each per rollout.
 */
const SAVE_GAP_MS = 100;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A rollout's state in memory and its writes to KV (compare-and-set, through a
 * RolloutStateWriter). Writes go one at a time and coalesce: while one runs, all
 * later saves share the single next write, which takes the state as it is then —
 * a wave of hundreds of hosts costs a handful of writes, not two per host.
 */
export class RolloutProgress {
  readonly state: RolloutState;
  /** Set when a write failed because a record is over the server's max_payload: the state cannot be resumed. */
  tooLarge = false;
  private readonly writer: RolloutStateWriter;
  private readonly abort: RolloutAbort;
  private readonly writes = new PQueue({ concurrency: 1 });
  /** The write not started yet that later saves share. */
  private next: Promise<void> | undefined;
  /** Hosts whose progress changed since the last write (only their shards are written). */
  private dirty = new Set<string>();
  private written = false;
  private lastStart = 0;

  constructor(state: RolloutState, writer: RolloutStateWriter, abort: RolloutAbort) {
    this.state = state;
    this.writer = writer;
    this.abort = abort;
  }

  /** The progress of a host of this rollout. */
  host(host: string): HostProgress {
    return this.state.hosts![host]!;
  }

  /** The hosts of this rollout whose status is one of `status`. */
  hosts(...status: HostProgress["status"][]): string[] {
    return Object.entries(this.state.hosts ?? {})
      .filter(([, h]) => status.includes(h.status))
      .map(([n]) => n);
  }

  /**
   * Persists the state with `hosts` marked changed (none: only the header may have changed).
   * Rejects when the write fails: a LockLostError when someone else wrote the record, else the
   * rollout's fatal error ("cannot write the rollout state: ..."), also kept on the abort.
   */
  save(...hosts: string[]): Promise<void> {
    for (const h of hosts) this.dirty.add(h);
    if (this.next) return this.next;
    const behind = this.writes.pending > 0;
    let started = false;
    const queued = this.writes.add(async () => {
      const gap = SAVE_GAP_MS - (Date.now() - this.lastStart);
      if (behind && gap > 0) await sleep(gap);
      // From here on the write takes the state as it is: later saves need a write of their own.
      started = true;
      this.next = undefined;
      await this.write();
    });
    // A write that started at once (none running) is not shared.
    if (!started) this.next = queued;
    return queued;
  }

  /** Resolves when no write runs or waits (never rejects). */
  idle(): Promise<void> {
    return this.writes.onIdle();
  }

  /** Writes the header alone, without hosts: for a state whose hosts cannot be written any more (it is then not resumable). */
  saveHeaderOnly(): Promise<void> {
    return this.writer.saveHeaderOnly(this.state);
  }

  private async write(): Promise<void> {
    if (this.abort.fatal) throw this.abort.fatal;
    if (this.abort.lockLost) throw new LockLostError(this.abort.lockLost);
    this.lastStart = Date.now();
    this.state.updatedAt = new Date().toISOString();
    const dirty = this.dirty;
    this.dirty = new Set();
    try {
      // The first write of a state (new or resumed) writes every shard.
      await withRetry(() => this.writer.save(this.state, this.written ? dirty : undefined), STORE_RETRY_MS);
      this.written = true;
    } catch (err) {
      for (const h of dirty) this.dirty.add(h);
      if (!(err instanceof LockLostError)) {
        this.tooLarge ||= err instanceof StateTooLargeError;
        this.abort.fatal ??= new Error(`cannot write the rollout state: ${(err as Error).message}`);
      }
      throw this.abort.fatal ?? err;
    }
  }
}
