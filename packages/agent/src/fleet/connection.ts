import { connect, type NatsConnection } from "@nats-io/transport-node";
import type pRetry from "p-retry";

/** Where and how patiently to connect. */
export interface ConnectionSettings {
  servers: string[];
  /** The first wait between two attempts to connect (ms, default 1 s); it doubles per failed attempt up to reconnectMaxMs, each scaled by a random 0.5-1.5. */
  reconnectTimeWaitMs?: number;
  /** The longest wait between two attempts (ms, default 32 × reconnectTimeWaitMs, at least 5 s). */
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
 * The waits between attempts to connect (ConnectionSettings): doubling from
 * reconnectTimeWaitMs up to reconnectMaxMs, each scaled by a random 0.5-1.5
 * so that a fleet cut off together does not come back together. One
 * schedule per agent serves nats.js's reconnects, connecting from scratch
 * and replacing a connection closed for good; reset once connected.
 */
export class Backoff {
  private attempt = 0;
  private readonly base: number;
  private readonly max: number;

  constructor(settings: ConnectionSettings) {
    this.base = settings.reconnectTimeWaitMs ?? 1000;
    this.max = settings.reconnectMaxMs ?? Math.max(this.base * 32, 5000);
  }

  /** The next wait (ms); each call counts one more failed attempt. */
  next(): number {
    const raw = Math.min(this.max, this.base * 2 ** Math.min(this.attempt++, 20));
    return Math.round(raw * (0.5 + Math.random()));
  }

  /** Back to the first wait (after a successful connect). */
  reset(): void {
    this.attempt = 0;
  }
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
 * Connects to any of the servers. With waitOnFirstConnect, nats.js keeps
 * dialling (in random server order, waiting `backoff.next()` between
 * rounds) until one answers; a connection it opens reconnects the same way
 * forever, and one that closes for good is the caller's to replace.
 * Rejects only on what nats.js does not retry itself (the caller's
 * retrySchedule covers it). The backoff is reset once connected.
 * Undefined when `signal` aborted while connecting: the connect itself
 * cannot be aborted, so a connection that arrives after a stop is closed
 * here rather than set up and leaked.
 */
export async function connectNats(settings: ConnectionSettings, auth: ConnectionAuth, backoff: Backoff, signal: AbortSignal): Promise<NatsConnection | undefined> {
  if (signal.aborted) return undefined;
  const nc = await connect({
    servers: settings.servers,
    ...auth,
    maxReconnectAttempts: -1,
    reconnectDelayHandler: () => backoff.next(),
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    maxPingOut: 3,
    timeout: 5000,
  });
  if (signal.aborted) {
    await nc.close().catch(() => {});
    return undefined;
  }
  backoff.reset();
  return nc;
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
