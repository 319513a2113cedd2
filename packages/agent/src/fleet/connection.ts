import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import type pRetry from "p-retry";

/** The first wait between two dials (ms) when ConnectionSettings.reconnectTimeWaitMs is not given. */
export const DEFAULT_RECONNECT_TIME_WAIT_MS = 250;
/**
 * The longest wait between two dials (ms) when ConnectionSettings.reconnectMaxMs
 * is not given: an agent whose server is back dials it within this time, well
 * inside the 20 s apply confirmation deadline (lockout.ts, FleetMemberOptions.confirmDeadlineMs).
 */
export const DEFAULT_RECONNECT_MAX_MS = 5000;

/** Where and how patiently to connect. */
export interface ConnectionSettings {
  servers: string[];
  /** The wait after the first failed dial (ms, default 250); it doubles per dial up to reconnectMaxMs, each drawn in [½, 1] × its step (jitter). */
  reconnectTimeWaitMs?: number;
  /** The longest wait between two dials (ms, default 5 s; never below reconnectTimeWaitMs). */
  reconnectMaxMs?: number;
}

/** Who connects: a NATS user, the connection's name, and the inbox prefix its permissions allow. */
export interface ConnectionAuth {
  user: string;
  pass: string;
  name: string;
  inboxPrefix?: string;
}

/**
 * The waits between dials of one agent: after dial k (k = 0, 1, ...) the next
 * dial comes `min(reconnectMaxMs, reconnectTimeWaitMs × 2^k)` later, scaled
 * by a random factor in [0.5, 1] drawn once per dial ("equal jitter"), so a
 * fleet cut off together does not come back together, and no wait is ever
 * longer than reconnectMaxMs. Reset to the first step once connected.
 *
 * It advances once per dial, whoever dials: nats.js's own reconnect loop
 * (through {@link natsReconnectOptions}: `reconnectToServer`, which nats.js
 * calls once per dial, calls {@link dialed}; `reconnectDelayHandler`, which
 * it calls on every pass of the loop, dial or not, only reads {@link wait})
 * or the agent's connect attempts (connectNats), which dial through the same
 * loop. nats.js v3.4.0 core/src/protocol.ts `dodialLoop` (lines 650-740):
 * each pass calls reconnectDelayHandler() (660), picks the next server
 * round-robin (663, servers.ts:277), and dials it only when
 * `srv.lastConnect + wait <= now` (674), calling reconnectToServer just
 * before (680) and setting lastConnect (716); else it sleeps
 * `min(wait, lastConnect + wait - now)` (735-737) and passes again. A
 * handler that advanced on each call (this class before issue 15) doubled
 * on every sleep and reached its 32 s cap before the second dial.
 */
export class Backoff {
  private dials = 0;
  private current: number;
  private readonly base: number;
  private readonly max: number;
  private readonly random: () => number;

  /** `random`: a source of numbers in [0, 1) (Math.random; tests pass their own). */
  constructor(settings: Pick<ConnectionSettings, "reconnectTimeWaitMs" | "reconnectMaxMs">, random: () => number = Math.random) {
    this.base = Math.max(1, settings.reconnectTimeWaitMs ?? DEFAULT_RECONNECT_TIME_WAIT_MS);
    this.max = Math.max(this.base, settings.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS);
    this.random = random;
    this.current = this.draw(this.base);
  }

  /** The longest wait between two dials (ms). */
  get capMs(): number {
    return this.max;
  }

  /** A dial starts now: the wait before the next one becomes the next step of the schedule. */
  dialed(): void {
    this.current = this.draw(Math.min(this.max, this.base * 2 ** Math.min(this.dials, 30)));
    this.dials++;
  }

  /** The wait (ms) between the last dial and the next one; the same value until the next dial. */
  wait(): number {
    return this.current;
  }

  /** The wait (ms) before trying again after a failed attempt: {@link wait} (the dials of the attempt advanced it). */
  next(): number {
    return this.current;
  }

  /** Back to the first step (after a successful connect or reconnect). */
  reset(): void {
    this.dials = 0;
    this.current = this.draw(this.base);
  }

  private draw(step: number): number {
    return Math.max(1, Math.round(step * (0.5 + 0.5 * this.random())));
  }
}

/**
 * The nats.js connection options that make its reconnect loop follow
 * `backoff`, one step per dial (see Backoff for the loop, with its source
 * lines): `reconnectDelayHandler` reads the wait, `reconnectToServer`
 * (nats.js v3.4.0 core/src/core.ts:275, "invoked on every connection
 * attempt (initial connect and reconnects)") advances it and returns null
 * (nats.js dials the server it picked), and the loop never gives up
 * (`maxReconnectAttempts: -1`).
 */
export function natsReconnectOptions(backoff: Backoff): Pick<ConnectionOptions, "maxReconnectAttempts" | "reconnectDelayHandler" | "reconnectToServer"> {
  return {
    maxReconnectAttempts: -1,
    reconnectDelayHandler: () => backoff.wait(),
    reconnectToServer: () => {
      backoff.dialed();
      return null;
    },
  };
}

/**
 * The p-retry options for "forever, until `signal` aborts", waiting
 * `backoff.next()` after each failure (p-retry's own delay is off: its
 * jitter is 1-2x, not the agent's schedule).
 */
export function retrySchedule(backoff: Backoff, signal: AbortSignal, onFailure: (error: Error) => void): Parameters<typeof pRetry>[1] {
  return {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 0,
    signal,
    onFailedAttempt: async ({ error }) => {
      onFailure(error);
      await pause(backoff.next(), signal);
    },
  };
}

/**
 * One attempt to connect: nats.js dials each of the servers once (in random
 * order; `waitOnFirstConnect` is off, so a server that fails before the
 * first connection is dropped from the attempt's pool, nats.js v3.4.0
 * core/src/protocol.ts:721-727, and the attempt rejects when none is left,
 * 664-671) and rejects if none answers; the caller waits `backoff.next()`
 * and tries again (retrySchedule), so the agent owns the loop until the
 * first connection and can stop between any two dials. A dial is bounded
 * by nats.js's `timeout` (5 s). Request errors carry no async stack
 * trace (`noAsyncTraces`: nats.js would build one Error per request). Once connected, nats.js reconnects by
 * itself forever on the backoff's schedule (natsReconnectOptions); a
 * connection that closes for good is the caller's to replace. The backoff
 * is reset once connected.
 *
 * Resolves undefined as soon as `signal` aborts, even while dialling:
 * nats.js's `connect()` cannot be aborted, so it is left to settle, and a
 * connection that arrives after the stop is closed rather than set up and
 * leaked (a refused dial settles at once, a silent server within `timeout`).
 */
export async function connectNats(settings: ConnectionSettings, auth: ConnectionAuth, backoff: Backoff, signal: AbortSignal): Promise<NatsConnection | undefined> {
  if (signal.aborted) return undefined;
  const dialing = connect({
    servers: settings.servers,
    ...auth,
    ...natsReconnectOptions(backoff),
    waitOnFirstConnect: false,
    pingInterval: 10_000,
    maxPingOut: 3,
    timeout: 5000,
    // nats.js otherwise builds an Error (with its stack) for every request and every request timer, only to give a
    // timeout an async stack trace (nats-core v3 nats.js request(), util.js timeout()); the errors thrown keep their
    // type, message and code (TimeoutError, NoRespondersError, RequestError), only their stacks end inside nats.js.
    // The controller sets it too (control-plane.ts). Issue 18: 0.68 s of 19 s busy per 5,000 agent applies.
    noAsyncTraces: true,
  });
  const stopped = Symbol("stopped");
  let onAbort = () => {};
  const aborted = new Promise<typeof stopped>((resolve) => {
    onAbort = () => resolve(stopped);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const nc = await Promise.race([dialing, aborted]);
    if (nc === stopped || signal.aborted) {
      void dialing.then((late) => late.close()).catch(() => {});
      return undefined;
    }
    backoff.reset();
    return nc;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Waits `ms`, or less when `signal` aborts first (never rejects). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
