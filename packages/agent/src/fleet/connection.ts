import { connect, type NatsConnection } from "@nats-io/transport-node";
import pRetry from "p-retry";

/** Where and how patiently to connect. */
export interface ConnectionSettings {
  servers: string[];
  /** Wait before the first retry (ms); nats.js waits this (plus up to as much jitter) between reconnect rounds. */
  reconnectTimeWaitMs?: number;
  /** The longest wait between two attempts to connect from scratch (ms). */
  reconnectMaxMs?: number;
}

/** Who connects: a NATS user, the connection's name, and the inbox prefix its permissions allow. */
export interface ConnectionAuth {
  user: string;
  pass: string;
  name: string;
  inboxPrefix?: string;
}

/** The p-retry options for connecting from scratch: forever, doubling from the base wait up to the max, each randomised (1-2x). */
export function retrySchedule(settings: ConnectionSettings, signal: AbortSignal, onFailure: (error: Error) => void): Parameters<typeof pRetry>[1] {
  const base = settings.reconnectTimeWaitMs ?? 1000;
  return {
    retries: Number.POSITIVE_INFINITY,
    factor: 2,
    minTimeout: base,
    maxTimeout: settings.reconnectMaxMs ?? Math.max(base * 32, 5000),
    randomize: true,
    signal,
    onFailedAttempt: ({ error }) => onFailure(error),
  };
}

/**
 * Connects to any of the servers, trying again (retrySchedule) until one
 * answers; undefined once `signal` aborts. The connection reconnects on its
 * own forever (nats.js tries the servers in random order, then waits
 * reconnectTimeWaitMs plus jitter); a connection that closes for good is
 * the caller's to replace.
 */
export async function connectNats(settings: ConnectionSettings, auth: ConnectionAuth, signal: AbortSignal, log: (event: Record<string, unknown>) => void): Promise<NatsConnection | undefined> {
  const wait = settings.reconnectTimeWaitMs ?? 1000;
  const attempt = () =>
    connect({
      servers: settings.servers,
      ...auth,
      maxReconnectAttempts: -1,
      reconnectTimeWait: wait,
      reconnectJitter: wait,
      waitOnFirstConnect: true,
      pingInterval: 10_000,
      maxPingOut: 3,
      timeout: 5000,
    });
  try {
    return await pRetry(attempt, retrySchedule(settings, signal, (error) => log({ event: "connect-failed", error: error.message })));
  } catch (err) {
    if (signal.aborted) return undefined;
    throw err;
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
