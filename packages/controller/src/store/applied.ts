import type { KV, KvEntry, KvWatchEntry } from "@nats-io/kv";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { DecodeError, Heartbeat, Report, decodeMessage, hostOfSubject, reportSubject } from "@netfleet/shared";
import PQueue from "p-queue";
import { AheadReports, Candidates, UnconfirmedError, cleanSuccess, sameBytes, type ConfirmWait, type Waiter } from "./applied-confirm.ts";
import { liveValue, snapshot } from "./kv.ts";

export { UnconfirmedError, type ConfirmWait } from "./applied-confirm.ts";

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
  /** Set when the same bytes were heard on the report subject: the agent confirmed this report. */
  confirmed?: true;
}

/** What `done` and `running` look at in a report. */
type Head = Pick<Report, "host" | "revision" | "rolledBackRevision">;

const done = (r: Head | undefined | null, host: string, revision: number): boolean =>
  r != null && r.host === host && (r.revision >= revision || (r.rolledBackRevision ?? 0) >= revision);

/** Tuning of the applied view's fallback sweep, and where it hears confirmations. */
export interface AppliedViewOptions {
  /** Hosts waiting longer than this are read from KV directly (the fallback when the watch missed something). */
  sweepAfterMs?: number;
  /** Reads per sweep at once (at least 1). */
  sweepConcurrency?: number;
  /**
   * The connection and site whose report subject (`nf.<site>.report.*`) `start` subscribes to, and whose
   * heartbeats are heard while a success waits long for its confirmation; without it only `offer` confirms.
   */
  confirmations?: { nc: NatsConnection; site: string };
  /**
   * A success waiting this long for its confirmation (at most half its window) starts the heartbeat
   * subscription (default 5000 ms): the agent's report on the report subject can be lost (core NATS),
   * its heartbeats (every 15 s) carry the revision it runs once confirmed.
   */
  heartbeatAfterMs?: number;
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
 *
 * A report in the applied bucket is the agent's lockout confirmation
 * attempt, not its outcome (agent fleet/lockout.ts confirmReport: it stores
 * the report there, and when that round trip does not complete before its
 * deadline, it undoes the revision and later stores a rolled-back report;
 * the put can land while its acknowledgement is lost).
 * Only after its confirmation does the agent publish the same report on the
 * report subject, and its heartbeats carry the revision it runs from then on.
 * So a wait with `confirm` takes a success from the bucket as a candidate,
 * and settles on the confirmation: those bytes heard on the report subject
 * (compared, not decoded), or a heartbeat of that revision and hash (heard
 * only while a success has waited `heartbeatAfterMs`); a failure, or a
 * rolled-back report, settles it at once; no confirmation within the window
 * rejects it (UnconfirmedError). One timer looks after all candidates.
 */
export class AppliedView {
  private readonly kv: KV;
  private readonly held = new Map<string, Held>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly options: Required<Omit<AppliedViewOptions, "log" | "confirmations">>;
  private readonly confirmations: AppliedViewOptions["confirmations"];
  private readonly log: (event: Record<string, unknown>) => void;
  private watcher: { stop(): void } | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private started: Promise<boolean> | undefined;
  private initialized = false;
  /** Reports heard on the report subject before the applied bucket's entry of the same bytes (by host; see onReport). */
  private readonly ahead = new AheadReports();
  /** Waits holding a candidate (a success not confirmed yet), their timer and the heartbeat subscription. */
  private readonly candidates: Candidates;
  private reports: Subscription | undefined;

  constructor(kv: KV, options: AppliedViewOptions = {}) {
    this.kv = kv;
    this.options = { sweepAfterMs: options.sweepAfterMs ?? 5000, sweepConcurrency: options.sweepConcurrency ?? 16, heartbeatAfterMs: options.heartbeatAfterMs ?? 5000 };
    this.confirmations = options.confirmations;
    this.log = options.log ?? (() => {});
    this.candidates = new Candidates({
      heartbeatAfterMs: this.options.heartbeatAfterMs,
      confirmations: options.confirmations,
      log: this.log,
      expire: (w) => {
        const host = w.candidate!.report.host;
        const set = this.waiters.get(host);
        if (set) this.settle(host, set, w, new UnconfirmedError(host, w.revision, w.confirm!.windowMs));
        else this.candidates.delete(w);
      },
      heartbeat: (msg) => this.onHeartbeat(msg),
    });
  }

  /**
   * Starts the watch; resolves true once the last value of every key is in
   * (false when that took longer than `timeoutMs`: lookups then fall back to reads).
   */
  start(timeoutMs = 30_000): Promise<boolean> {
    this.started ??= (async () => {
      if (this.confirmations) {
        const { nc, site } = this.confirmations;
        // A callback, not an iterator: each message is one host lookup (and, for a host waiting, a byte comparison) in the parser's turn.
        this.reports = nc.subscribe(reportSubject(site, "*"), { callback: (err, msg) => err ? this.log({ event: "report-subscription-error", error: err.message }) : this.onReport(msg) });
        void (async () => {
          for await (const st of nc.status()) {
            if (st.type === "disconnect") this.candidates.disconnected();
            else if (st.type === "reconnect") this.candidates.reconnected();
          }
        })().catch(() => {});
      }
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
    if (current && current.revision >= e.revision) {
      // The same entry again (read by the sweep): judged on what is held.
      if (current.revision === e.revision && this.waiters.has(e.key)) this.notify(e.key, this.decode(e.key, current), current);
      return;
    }
    if (e.operation !== "PUT") {
      this.held.delete(e.key);
      return;
    }
    // A copy: the entry's value is a view into the socket's read buffer, which it would keep whole.
    const held: Held = { revision: e.revision, data: e.value.slice() };
    // Its confirmation may have been heard first (the report subject overtook the watch).
    const ahead = this.ahead.take(e.key);
    if (ahead && sameBytes(ahead, held.data)) held.confirmed = true;
    this.held.set(e.key, held);
    if (this.waiters.has(e.key)) this.notify(e.key, this.decode(e.key, held), held);
  }

  /** A report heard on the report subject (already decoded and checked by the caller): the agent's confirmed report. */
  offer(report: Report): void {
    if (this.waiters.has(report.host)) this.notify(report.host, report, undefined);
  }

  /**
   * A message on the report subject (the agent publishes its report there only once confirmed). The same
   * bytes as the held entry mark it confirmed; a host waiting on a candidate with these bytes is settled
   * without a decode; for any other waiting host the report is decoded and offered.
   */
  private onReport(msg: Msg): void {
    const host = hostOfSubject(msg.subject);
    if (!host) return;
    const held = this.held.get(host);
    if (held && sameBytes(held.data, msg.data)) held.confirmed = true;
    // Not the held entry: the report overtook the watch (the agent stores it, then publishes it; the watch's delivery can come
    // later under load). Kept until the host's next entry arrives, which is compared with it: every published report was stored first.
    else this.ahead.keep(host, msg.data);
    const set = this.waiters.get(host);
    if (!set) return;
    for (const w of set) if (w.candidate && sameBytes(w.candidate.data, msg.data)) this.settle(host, set, w, w.candidate.report);
    if (!this.waiters.has(host)) return;
    let report: Report;
    try {
      report = decodeMessage(Report, msg.subject, msg.data);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.log({ event: "bad-message", subject: msg.subject, error: err.message });
      return;
    }
    if (report.host === host && report.site === this.confirmations?.site) this.offer(report);
  }

  /** A heartbeat (heard while some success waits long for its confirmation): confirms the candidates of the revision and hash it runs. */
  private onHeartbeat(msg: Msg): void {
    const host = hostOfSubject(msg.subject);
    const set = host ? this.waiters.get(host) : undefined;
    if (!host || !set) return;
    let hb: Heartbeat | undefined;
    for (const w of set) {
      if (!w.candidate) continue;
      try {
        hb ??= decodeMessage(Heartbeat, msg.subject, msg.data);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.log({ event: "bad-message", subject: msg.subject, error: err.message });
        return;
      }
      // The agent saves the revision it runs (and heartbeats it) only after its confirmation.
      if (hb.host === host && hb.revision >= w.revision && hb.hash === w.confirm!.hash) this.settle(host, set, w, w.candidate.report);
    }
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

  /**
   * A report of `host` for its waiters: `held` is the applied bucket's entry it was decoded from
   * (undefined: heard on the report subject, so confirmed). A success of a waiter's revision that
   * needs confirmation and does not have it becomes that waiter's candidate; anything else done settles it.
   */
  private notify(host: string, report: Report | undefined, held: Held | undefined): void {
    const set = this.waiters.get(host);
    if (!set || !report) return;
    for (const w of set) {
      if (!done(report, host, w.revision)) continue;
      if (held && !held.confirmed && w.confirm && cleanSuccess(report, w.revision, w.confirm.hash)) this.candidates.hold(w, report, held.data);
      else this.settle(host, set, w, report);
    }
  }

  /** Ends a wait with `report` (or `err`): out of its host's set and of the candidates. */
  private settle(host: string, set: Set<Waiter>, w: Waiter, report: Report | Error): void {
    set.delete(w);
    if (set.size === 0 && this.waiters.get(host) === set) this.waiters.delete(host);
    this.candidates.delete(w);
    if (report instanceof Error) w.reject(report);
    else w.resolve(report);
  }

  /**
   * Resolves with the report of `revision` (or later, or its rollback) once
   * it is held: heard from the watch or offered from the report subject;
   * hosts that wait long are read from KV by one shared sweep.
   *
   * With `confirm`, a report from the applied bucket that is the clean success
   * of `revision` with `confirm.hash` is not enough: it resolves once the agent
   * confirmed it (the same report on the report subject, or a heartbeat of that
   * revision and hash), or with the report that replaces it (a rollback, a
   * failure, a later revision); any other report resolves at once as without.
   * @throws UnconfirmedError when such a success was not confirmed within
   *   `confirm.windowMs` of being held (or by `timeoutMs`).
   * @throws Error when no report of `revision` came within `timeoutMs`.
   */
  wait(host: string, revision: number, timeoutMs: number, confirm?: ConfirmWait): Promise<Report> {
    let have: Report | undefined;
    const held = this.held.get(host);
    if (held && done(this.head(host), host, revision)) {
      have = this.get(host);
      if (have && !(confirm && !held.confirmed && cleanSuccess(have, revision, confirm.hash))) return Promise.resolve(have);
    }
    return new Promise<Report>((resolve, reject) => {
      const now = Date.now();
      let set = this.waiters.get(host);
      if (!set) this.waiters.set(host, (set = new Set()));
      const timer = setTimeout(() => {
        const s = this.waiters.get(host) ?? set!;
        this.settle(host, s, waiter, waiter.candidate ? new UnconfirmedError(host, revision, Date.now() - waiter.candidate.at) : new Error(`${host} did not report revision ${revision} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        revision,
        since: now,
        // Without a complete view, the first sweep reads this host at once.
        lastSwept: this.initialized ? now : 0,
        confirm,
        candidate: undefined,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      set.add(waiter);
      if (have && held) this.candidates.hold(waiter, have, held.data);
      else this.scheduleSweep(this.initialized ? this.options.sweepAfterMs : 0);
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
          // A waiter with a candidate has its report; it waits for the agent's confirmation, which KV does not show.
          if (!w.candidate && (now - w.lastSwept >= this.options.sweepAfterMs || w.lastSwept === 0)) {
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
          // Fed through onEntry as a watch entry would be: held (bytes kept for the confirmation's comparison) and judged.
          const entry = await this.kv.get(host).catch(() => null);
          if (entry) this.onEntry(entry);
        }),
      );
    } finally {
      this.sweeping = false;
      if (this.waiters.size > 0) this.scheduleSweep(Math.max(250, this.options.sweepAfterMs / 2));
    }
  }

  /** Stops the watch, the sweep and the subscriptions (pending waits then end by their timeout). */
  stop(): void {
    clearTimeout(this.sweepTimer);
    this.watcher?.stop();
    this.reports?.unsubscribe();
    this.reports = undefined;
    this.candidates.stop();
  }
}
