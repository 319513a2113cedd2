import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { heartbeatSubject, type Report } from "@netfleet/shared";

/*
 * What AppliedView (applied.ts) needs to judge a success only once its agent confirmed it: the
 * wait's terms, the error of a success never confirmed, the byte comparison that stands for a
 * confirmation, and the reports heard on the report subject before their applied-bucket entry.
 */

/** What a wait for a confirmed report judges against (AppliedView.wait). */
export interface ConfirmWait {
  /** The content hash of the assignment at the awaited revision: a report of it without failures is a success to confirm. */
  hash: string;
  /** How long such a success held from the applied bucket waits for its agent's confirmation, in milliseconds. */
  windowMs: number;
}

/**
 * A host whose applied report of a revision was stored but never confirmed by
 * its agent within the confirmation window (or the wait's timeout): the agent
 * most likely could not complete its lockout confirmation and undid the revision.
 */
export class UnconfirmedError extends Error {
  readonly host: string;
  readonly revision: number;
  /** How long the success waited for its confirmation, in milliseconds. */
  readonly waitedMs: number;

  constructor(host: string, revision: number, waitedMs: number) {
    super(`applied revision ${revision} but never confirmed within ${seconds(waitedMs)}: no report or heartbeat since; its lockout protection has likely undone it`);
    this.name = "UnconfirmedError";
    this.host = host;
    this.revision = revision;
    this.waitedMs = waitedMs;
  }
}

/** `40 s`, `2.5 s`: milliseconds as seconds, at most one decimal. */
const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

/** The verified success of `revision` with content `hash`: not rolled back, that revision and document, no failed resource. */
export const cleanSuccess = (r: Report, revision: number, hash: string): boolean => !r.rolledBack && r.revision === revision && r.hash === hash && r.summary.failed === 0;

/** Byte equality without copying either side (both may be views into larger buffers). */
export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

/** At most this many bytes of reports heard ahead of their entries are kept (AheadReports): 10,000 hosts' ~0.6 KB reports are 6 MB. */
const AHEAD_MAX_BYTES = 16 * 2 ** 20;

/**
 * Reports heard on the report subject before the applied bucket's entry of the same bytes, by host: the
 * agent stores its report, then publishes it, but under load the watch's delivery can come later. One per
 * host (the newest); every published report was stored first, so the host's next entry takes it.
 */
export class AheadReports {
  private readonly byHost = new Map<string, Uint8Array>();
  private bytes = 0;

  /**
   * Keeps a copy of `data` for `host`, replacing the host's earlier one; the oldest go first beyond
   * AHEAD_MAX_BYTES in all (a flood of reports then costs a confirmation its shortcut, and the host is
   * confirmed by heartbeat or fails at the window, never a wrong success).
   */
  keep(host: string, data: Uint8Array): void {
    this.take(host);
    if (data.byteLength > AHEAD_MAX_BYTES) return;
    this.byHost.set(host, data.slice());
    this.bytes += data.byteLength;
    for (const [h, d] of this.byHost) {
      if (this.bytes <= AHEAD_MAX_BYTES) break;
      this.byHost.delete(h);
      this.bytes -= d.byteLength;
    }
  }

  /** The bytes kept for `host` (undefined: none), no longer kept. */
  take(host: string): Uint8Array | undefined {
    const data = this.byHost.get(host);
    if (data) {
      this.byHost.delete(host);
      this.bytes -= data.byteLength;
    }
    return data;
  }
}

/** A clean success held from the applied bucket, not confirmed yet: the report, its stored bytes, and when it was first held (ms). */
export interface Candidate {
  report: Report;
  data: Uint8Array;
  at: number;
}

/** One wait of AppliedView.wait: the revision it waits for, its sweep times (ms), its confirmation terms and candidate. */
export type Waiter = {
  revision: number;
  since: number;
  lastSwept: number;
  /** Set when the wait needs the agent's confirmation of a success (see AppliedView.wait). */
  confirm: ConfirmWait | undefined;
  /** The success waiting for its confirmation, once held. */
  candidate: Candidate | undefined;
  resolve: (r: Report) => void;
  reject: (err: Error) => void;
};

/** What Candidates needs from its view. */
export interface CandidatesOptions {
  /** A candidate waiting this long (at most half its window) starts the heartbeat subscription, in milliseconds. */
  heartbeatAfterMs: number;
  /** The connection and site whose heartbeats are heard; without it none are. */
  confirmations: { nc: NatsConnection; site: string } | undefined;
  log: (event: Record<string, unknown>) => void;
  /** A candidate's window ran out (never while the connection is down): the view fails its wait. */
  expire: (w: Waiter) => void;
  /** A heartbeat heard while the subscription runs. */
  heartbeat: (msg: Msg) => void;
}

/**
 * The waits holding a candidate (a success not confirmed yet), with the one
 * timer that looks after them all: a candidate past its window expires, and
 * the heartbeat subscription runs while one has waited `heartbeatAfterMs` (at
 * most half its window) and ends with the last candidate. While the
 * connection is down no candidate expires; at its reconnect each gets its
 * window again (a confirmation published meanwhile is lost: core NATS) and the
 * heartbeats are heard at once.
 */
export class Candidates {
  private readonly waits = new Set<Waiter>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeats: Subscription | undefined;
  /** True while the connection is down (between its `disconnect` and `reconnect` status events). */
  private away = false;
  private readonly options: CandidatesOptions;

  constructor(options: CandidatesOptions) {
    this.options = options;
  }

  /** Makes `report` the wait's candidate (the window runs from the first one held) and keeps the timer going. */
  hold(w: Waiter, report: Report, data: Uint8Array): void {
    w.candidate = { report, data, at: w.candidate?.at ?? Date.now() };
    this.waits.add(w);
    this.timer ??= setInterval(() => this.check(), Math.min(250, Math.max(50, this.options.heartbeatAfterMs / 4)));
    this.timer.unref();
  }

  /** The wait ended. The timer ends on its next turn with no candidate left (not here: hosts confirmed one by one would start and stop it each). */
  delete(w: Waiter): void {
    this.waits.delete(w);
  }

  /** The connection is down: nothing can be heard, so no candidate expires. */
  disconnected(): void {
    this.away = true;
  }

  /** The connection is back: each candidate's window starts again from now, and heartbeats are heard at once. */
  reconnected(): void {
    this.away = false;
    if (this.waits.size === 0) return;
    const now = Date.now();
    for (const w of this.waits) w.candidate!.at = now;
    this.options.log({ event: "confirm-reconnect", waiting: this.waits.size });
    this.hearHeartbeats();
  }

  /** The timer and the heartbeat subscription end (the view stops). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.heartbeats?.unsubscribe();
    this.heartbeats = undefined;
  }

  private check(): void {
    const now = Date.now();
    let late = false;
    for (const w of [...this.waits]) {
      const age = now - w.candidate!.at;
      if (age >= w.confirm!.windowMs && !this.away) this.options.expire(w);
      else if (age >= Math.min(this.options.heartbeatAfterMs, w.confirm!.windowMs / 2)) late = true;
    }
    if (this.waits.size === 0) return this.stop();
    if (late) this.hearHeartbeats();
  }

  private hearHeartbeats(): void {
    const { confirmations, log } = this.options;
    if (this.heartbeats || !confirmations) return;
    log({ event: "confirm-heartbeats", waiting: this.waits.size });
    this.heartbeats = confirmations.nc.subscribe(heartbeatSubject(confirmations.site, "*"), {
      callback: (err, msg) => (err ? log({ event: "heartbeat-subscription-error", error: err.message }) : this.options.heartbeat(msg)),
    });
  }
}
