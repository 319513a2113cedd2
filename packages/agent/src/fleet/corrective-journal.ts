import type { NatsConnection } from "@nats-io/transport-node";
import {
  CORRECTIVE_RECENT,
  CorrectiveLog,
  DecodeError,
  correctiveBucket,
  decodeMessage,
  encodeMessage,
  hostKey,
  type CorrectiveChange,
} from "@netfleet/shared";
import { CoalescingRunner } from "../coalescing-runner.ts";
import { putKey, readKey } from "./kv.ts";
import { nextLog } from "./corrective.ts";

/** Where the journal writes (this site, and this host once enrolled) and how long a read or put may take. */
export interface CorrectiveJournalOptions {
  site: string;
  /** This host's inventory name, its key in the corrective bucket; undefined until enrolled (nothing is written). */
  host: () => string | undefined;
  /** A write that failed is tried again after this long, ms (default 1000), doubling after each failure in a row up to `retryMaxMs`. */
  retryMs?: number;
  /** The longest pause between tries, ms (default 60 s: a controller without the bucket, or older permissions, costs one try a minute). */
  retryMaxMs?: number;
  /** A read or put waits this long for its answer, ms (default 2000). */
  timeoutMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

/**
 * Keeps this host's corrective history in its own key of
 * `nf_<site>_corrective` (a `CorrectiveLog`: total count, the last
 * CORRECTIVE_RECENT changes). `record` queues repaired resources; they are
 * written once there is a connection (`attach`). The stored log is read
 * back first after every new connection, so the count and the list go on
 * from what the key holds (an agent restarted with an empty state dir
 * continues its host's record); a key that holds something else than a
 * log of this host is started over (and logged). A write is retried until
 * it is acknowledged, after `retryMs`, doubling up to `retryMaxMs`. Changes queued beyond
 * CORRECTIVE_RECENT while no write succeeds are counted, not kept; queued
 * changes live in memory only (an agent stopped while NATS is unreachable
 * loses them).
 */
export class CorrectiveJournal {
  /** Counters since start: writes acknowledged, changes counted but not kept while queued. */
  readonly stats = { stored: 0, dropped: 0 };
  private readonly options: CorrectiveJournalOptions;
  private readonly log: (event: Record<string, unknown>) => void;
  private nc: NatsConnection | undefined;
  private stored: CorrectiveLog | undefined;
  private seeded = false;
  private pending: CorrectiveChange[] = [];
  private pendingDropped = 0;
  /** Writes one at a time; a record or attach during a write asks for one more right after it. */
  private readonly writer: CoalescingRunner<boolean>;
  private stopped = false;
  private failures = 0;

  constructor(options: CorrectiveJournalOptions) {
    this.options = options;
    this.log = options.log ?? (() => {});
    this.writer = new CoalescingRunner<boolean>({
      run: async () => {
        let done = false;
        try {
          done = await this.flush();
        } finally {
          this.failures = done ? 0 : this.failures + 1;
        }
        return done;
      },
      onError: (err) => this.log({ event: "corrective-log-error", error: (err as Error).message }),
      nextRunAfter: (done) => (done || this.pending.length === 0 ? undefined : Math.min(this.options.retryMaxMs ?? 60_000, (this.options.retryMs ?? 1000) * 2 ** Math.min(this.failures - 1, 16))),
    });
  }

  /** Queues repaired resources (oldest first) and writes them as soon as it can. */
  record(changes: readonly CorrectiveChange[]): void {
    if (changes.length === 0 || this.stopped) return;
    this.pending.push(...changes);
    const excess = this.pending.length - CORRECTIVE_RECENT;
    if (excess > 0) {
      this.pending.splice(0, excess);
      this.pendingDropped += excess;
      this.stats.dropped += excess;
    }
    void this.writer.request();
  }

  /** The connection to write on: a new one (`fresh`) or another one makes the journal read its key again first. */
  attach(nc: NatsConnection, fresh: boolean): void {
    if (fresh || this.nc !== nc) this.seeded = false;
    this.nc = nc;
    if (this.pending.length > 0) void this.writer.request();
  }

  /** Changes recorded and not yet acknowledged. */
  get unsent(): number {
    return this.pending.length;
  }

  /** Stops retrying; resolves once a write under way has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.writer.stop();
  }

  /** Writes what is queued; false when it could not (no connection yet, not enrolled, a failed read or put). */
  private async flush(): Promise<boolean> {
    const nc = this.nc;
    const host = this.options.host();
    if (!nc || nc.isClosed() || !host) return false;
    const bucket = correctiveBucket(this.options.site);
    const key = hostKey(host);
    const timeout = this.options.timeoutMs ?? 2000;
    if (!this.seeded) {
      const got = await readKey(nc, bucket, key, timeout);
      this.stored = undefined;
      if (got?.operation === "PUT") {
        try {
          const log = decodeMessage(CorrectiveLog, `kv ${bucket}/${key}`, got.data);
          if (log.host === host && log.site === this.options.site) this.stored = log;
          else this.log({ event: "corrective-log-reset", reason: `key holds the log of ${log.site}/${log.host}` });
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
          this.log({ event: "corrective-log-reset", reason: err.message });
        }
      }
      this.seeded = true;
    }
    if (this.pending.length === 0) return true;
    const batch = this.pending.slice();
    const dropped = this.pendingDropped;
    const next = nextLog(this.stored, { site: this.options.site, host }, batch, new Date().toISOString(), { extraCount: dropped });
    await putKey(nc, bucket, key, encodeMessage(next), timeout);
    this.stored = next;
    // Changes recorded meanwhile stay queued. `record` only appends, and drops from the front (counting them):
    // what it dropped meanwhile came from this batch first (already counted in `next`), then from the new ones.
    const droppedMeanwhile = this.pendingDropped - dropped;
    const fromBatch = Math.min(droppedMeanwhile, batch.length);
    this.pending.splice(0, batch.length - fromBatch);
    this.pendingDropped = droppedMeanwhile - fromBatch;
    this.stats.stored++;
    this.log({ event: "corrective-logged", count: next.count, kept: next.recent.length });
    return true;
  }
}
