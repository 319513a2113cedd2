import type { KV, KvEntry, KvWatchEntry } from "@nats-io/kv";
import { DecodeError, Report, decodeMessage } from "@netfleet/shared";
import PQueue from "p-queue";
import { liveValue, snapshot } from "./kv.ts";

type Waiter = {
  revision: number;
  since: number;
  lastSwept: number;
  resolve: (r: Report) => void;
};

/**
 * A stored entry of the applied bucket: its bytes (a copy of their own, not a view into the
 * connection's read buffer), and once decoded only the revisions a wait compares. A decoded report
 * is not kept: at 10,000 hosts the decoded reports were ~1 KB each on the heap for as long as the
 * process ran (the bytes are ~0.6 KB); whoever asks for a report gets it decoded then.
 */
interface Held {
  /** KV revision (stream sequence); 0 for a report heard on the report subject only. */
  revision: number;
  data: Uint8Array;
  /** Set once decoded: the report's own revisions; null when the value is not a report of this host. */
  head?: Head | null;
}

/** What `done` and `running` look at in a report. */
type Head = Pick<Report, "host" | "revision" | "rolledBackRevision">;

const done = (r: Head | undefined | null, host: string, revision: number): boolean =>
  r != null && r.host === host && (r.revision >= revision || (r.rolledBackRevision ?? 0) >= revision);

/** Tuning of the applied view's fallback sweep. */
export interface AppliedViewOptions {
  /** Hosts waiting longer than this are read from KV directly (the fallback when the watch missed something). */
  sweepAfterMs?: number;
  /** Reads per sweep at once (at least 1). */
  sweepConcurrency?: number;
  log?: (event: Record<string, unknown>) => void;
}

/**
 * Every agent's last applied report, in memory: one watch of the applied
 * bucket (an ordered push consumer: the last value of every key, then each
 * write) feeds a map; reports heard on the report subject feed it too.
 * Waiting for a host's revision is a map lookup and a callback, not a KV
 * read per host every few hundred milliseconds. A slow shared sweep reads
 * hosts that have waited long (a watch that lost its consumer recovers by
 * itself, but a missed message should not cost the whole apply timeout).
 */
export class AppliedView {
  private readonly kv: KV;
  private readonly held = new Map<string, Held>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly options: Required<Omit<AppliedViewOptions, "log">>;
  private readonly log: (event: Record<string, unknown>) => void;
  private watcher: { stop(): void } | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private started: Promise<boolean> | undefined;
  private initialized = false;

  constructor(kv: KV, options: AppliedViewOptions = {}) {
    this.kv = kv;
    this.options = { sweepAfterMs: options.sweepAfterMs ?? 5000, sweepConcurrency: options.sweepConcurrency ?? 16 };
    this.log = options.log ?? (() => {});
  }

  /**
   * Starts the watch; resolves true once the last value of every key is in
   * (false when that took longer than `timeoutMs`: lookups then fall back to reads).
   */
  start(timeoutMs = 30_000): Promise<boolean> {
    this.started ??= (async () => {
      let ready!: () => void;
      const initialized = new Promise<void>((r) => (ready = r));
      // The stream's last message is the last value of its key: the view is complete once it (or anything later) is in.
      const lastSeq = (await this.kv.status()).streamInfo.state.last_seq;
      if (lastSeq === 0) ready();
      const iter = await this.kv.watch({ key: ">" });
      this.watcher = iter;
      void (async () => {
        for await (const e of iter) {
          this.onEntry(e);
          if (e.revision >= lastSeq) ready();
        }
      })().catch((err: unknown) => this.log({ event: "applied-watch-error", error: (err as Error).message }));
      let timer: NodeJS.Timeout | undefined;
      const ok = await Promise.race([initialized.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
      clearTimeout(timer);
      this.initialized = ok;
      if (!ok) this.log({ event: "applied-watch-slow", ms: timeoutMs });
      return ok;
    })();
    return this.started;
  }

  /** True once the watch delivered every key's last value: `get` is then authoritative (absent means no report). */
  get ready(): boolean {
    return this.initialized;
  }

  private onEntry(e: KvWatchEntry | KvEntry): void {
    const current = this.held.get(e.key);
    if (current && current.revision > e.revision) return;
    if (e.operation !== "PUT") {
      this.held.delete(e.key);
      return;
    }
    // A copy: the entry's value is a view into the socket's read buffer, which it would keep whole.
    const held: Held = { revision: e.revision, data: e.value.slice() };
    this.held.set(e.key, held);
    if (this.waiters.has(e.key)) this.notify(e.key, this.decode(e.key, held));
  }

  /** A report heard on the report subject (already decoded and checked by the caller). */
  offer(report: Report): void {
    if (this.waiters.has(report.host)) this.notify(report.host, report);
  }

  /** The held report decoded (undefined when it is not a report of this host); its head is kept. */
  private decode(host: string, held: Held): Report | undefined {
    if (held.head === null) return undefined;
    let report: Report;
    try {
      report = decodeMessage(Report, `kv applied/${host}@${held.revision}`, held.data);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      held.head = null;
      return undefined;
    }
    if (report.host !== host) {
      held.head = null;
      return undefined;
    }
    held.head = { host: report.host, revision: report.revision, ...(report.rolledBackRevision !== undefined ? { rolledBackRevision: report.rolledBackRevision } : {}) };
    return report;
  }

  /** The revisions of the last report held for a host (decoded now if need be). */
  private head(host: string): Head | undefined {
    const held = this.held.get(host);
    if (!held) return undefined;
    if (held.head === undefined) this.decode(host, held);
    return held.head ?? undefined;
  }

  /** The last report held for a host, decoded now (each call decodes again: reports are kept as bytes). */
  get(host: string): Report | undefined {
    const held = this.held.get(host);
    return held ? this.decode(host, held) : undefined;
  }

  /**
   * The host's report read from KV now (not from the watch).
   * @throws DecodeError when the stored value is not a report; KV errors as they come.
   */
  async read(host: string): Promise<Report | undefined> {
    const entry = liveValue(await this.kv.get(host));
    return entry ? decodeMessage(Report, `kv ${entry.bucket}/${entry.key}`, entry.value) : undefined;
  }

  /**
   * Every host's report read from KV now, in one pass over the bucket
   * (store/kv.ts snapshot): `netfleet status` over a fleet. Values that do
   * not decode, or name another host than their key, are left out.
   * @throws when the bucket cannot be read (snapshot).
   */
  async readAll(): Promise<Map<string, Report>> {
    const out = new Map<string, Report>();
    for (const [host, entry] of await snapshot(this.kv)) {
      const report = this.decode(host, { revision: entry.revision, data: entry.value });
      if (report) out.set(host, report);
    }
    return out;
  }

  /** The host's last applied report: from the watch once it is complete, else read from KV. */
  last(host: string): Promise<Report | undefined> {
    return this.initialized ? Promise.resolve(this.get(host)) : this.read(host);
  }

  /**
   * The revision the host runs by its own report (its applied or rolled-back
   * revision, whichever is higher; 0 when unknown or unreadable): a new
   * revision must go above it, since the agent refuses anything not newer.
   */
  async running(host: string): Promise<number> {
    const report = this.initialized ? this.head(host) : await this.read(host).catch(() => undefined);
    const highest = Math.max(report?.revision ?? 0, report?.rolledBackRevision ?? 0);
    return Number.isSafeInteger(highest + 1) ? highest : 0;
  }

  private notify(host: string, report: Report | undefined): void {
    const set = this.waiters.get(host);
    if (!set || !report) return;
    for (const w of set) {
      if (done(report, host, w.revision)) {
        set.delete(w);
        w.resolve(report);
      }
    }
    if (set.size === 0) this.waiters.delete(host);
  }

  /**
   * Resolves with the report of `revision` (or later, or its rollback) once
   * it is held: heard from the watch or offered from the report subject;
   * hosts that wait long are read from KV by one shared sweep.
   * @throws Error when no such report came within `timeoutMs`.
   */
  wait(host: string, revision: number, timeoutMs: number): Promise<Report> {
    if (done(this.head(host), host, revision)) {
      const have = this.get(host);
      if (have) return Promise.resolve(have);
    }
    return new Promise<Report>((resolve, reject) => {
      const now = Date.now();
      let set = this.waiters.get(host);
      if (!set) this.waiters.set(host, (set = new Set()));
      const timer = setTimeout(() => {
        set!.delete(waiter);
        if (set!.size === 0 && this.waiters.get(host) === set) this.waiters.delete(host);
        reject(new Error(`${host} did not report revision ${revision} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        revision,
        since: now,
        // Without a complete view, the first sweep reads this host at once.
        lastSwept: this.initialized ? now : 0,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      set.add(waiter);
      this.scheduleSweep(this.initialized ? this.options.sweepAfterMs : 0);
    });
  }

  private scheduleSweep(delay: number): void {
    if (this.sweepTimer || this.sweeping) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      void this.sweep();
    }, delay);
    this.sweepTimer.unref();
  }

  /** Reads the hosts that have waited `sweepAfterMs` since they were last read. */
  private async sweep(): Promise<void> {
    this.sweeping = true;
    try {
      const now = Date.now();
      const due: string[] = [];
      for (const [host, set] of this.waiters) {
        for (const w of set) {
          if (now - w.lastSwept >= this.options.sweepAfterMs || w.lastSwept === 0) {
            due.push(host);
            for (const x of set) x.lastSwept = now;
            break;
          }
        }
      }
      const reads = new PQueue({ concurrency: this.options.sweepConcurrency });
      await reads.addAll(
        due.map((host) => async () => {
          if (!this.waiters.has(host)) return;
          const report = await this.read(host).catch(() => undefined);
          if (report) this.notify(host, report);
        }),
      );
    } finally {
      this.sweeping = false;
      if (this.waiters.size > 0) this.scheduleSweep(Math.max(250, this.options.sweepAfterMs / 2));
    }
  }

  /** Stops the watch and the sweep (pending waits then end by their timeout). */
  stop(): void {
    clearTimeout(this.sweepTimer);
    this.watcher?.stop();
  }
}
