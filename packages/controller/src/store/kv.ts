import type { KV, KvEntry } from "@nats-io/kv";
import pRetry from "p-retry";
import { DecodeError } from "@netfleet/shared";

/** True when a KV write lost a compare-and-set race (JetStream "wrong last sequence"). */
export function isRevisionConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 10071 || code === 10164 || (err instanceof Error && /wrong last sequence/i.test(err.message));
}

/**
 * True for failures that may pass on retry: a server or leader going away,
 * an election under way. A stream without a leader answers "no responders",
 * which the client reports as JetStream not enabled.
 */
export function isTransient(err: unknown): boolean {
  if (isStoreFull(err)) return false;
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (/permissions violation/i.test(e.message)) return false;
    if (["TimeoutError", "NoRespondersError", "NoResponders", "JetStreamNotEnabled", "ConnectionError", "ClosedConnectionError"].includes(e.name)) return true;
    if (/timeout|no responders|temporarily unavailable|not current|no suitable peers|leader|disconnect|jetstream is not enabled/i.test(e.message)) return true;
  }
  return false;
}

/**
 * True for a JetStream or NATS request that got no answer in time or no
 * responder: a nats.js error named TimeoutError, NoResponders (its
 * NoRespondersError class; NoRespondersError too) or
 * JetStreamNotEnabled (nats.js reports a JetStream API request with no
 * responder as "jetstream is not enabled"; nats-server answers "JetStream
 * not enabled for account" while it reloads its accounts), itself or as a
 * cause (up to 4 deep). Judged by the error's name only, never by its text:
 * the text of a message's refusal may carry what its sender chose (a
 * subject, a site name such as `timeout`), and a DecodeError is never one.
 * For retrying a hostile-facing handler (HostSubscriptions); isTransient,
 * which also reads messages, is for the controller's own store calls.
 */
export function isStoreHiccup(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e instanceof DecodeError) return false;
    if (["TimeoutError", "NoResponders", "NoRespondersError", "JetStreamNotEnabled"].includes(e.name)) return true;
  }
  return false;
}

/**
 * True when JetStream refused a write for lack of room: the server's
 * "insufficient resources" (10023) or "insufficient storage resources
 * available" (10047) API errors (NATS server docs, JetStream error codes),
 * or a DiskFullError of ours. Never retried (see isTransient): it does not
 * pass by waiting. Serve reports it as `disk full: <store dir>`.
 */
export function isStoreFull(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e.name === "DiskFullError" || /insufficient (storage )?resources/i.test(e.message)) return true;
    const code = (e as { code?: unknown; api_error?: { err_code?: unknown } }).api_error?.err_code;
    if (code === 10023 || code === 10047) return true;
  }
  return false;
}

/** The entry when it holds a value; undefined for none, a delete or a purge marker. */
export function liveValue(entry: KvEntry | null): KvEntry | undefined {
  return entry && entry.operation === "PUT" ? entry : undefined;
}

/** Writes `value` when the key is still at `lastRevision` (0 or undefined: absent or deleted). Returns the new revision. */
export async function compareAndSet(kv: KV, key: string, value: Uint8Array, lastRevision: number | undefined): Promise<number> {
  return lastRevision ? kv.update(key, value, lastRevision) : kv.create(key, value);
}

/**
 * Read-modify-write with compare-and-set, retried when another writer got
 * there first. `change` returns undefined to leave the key as it is.
 * A plain bounded loop, not p-retry: a lost race is settled by reading again
 * at once (waiting only lets more writers in), and `attempts` bounds it.
 * @throws the revision conflict after `attempts` lost races; any other error at once.
 */
export async function mutateKey<T>(
  kv: KV,
  key: string,
  decode: (entry: KvEntry) => T,
  encode: (value: T) => Uint8Array,
  change: (current: T | undefined) => T | undefined,
  attempts = 10,
): Promise<T | undefined> {
  for (let i = 0; ; i++) {
    const entry = liveValue(await kv.get(key));
    const current = entry ? decode(entry) : undefined;
    const next = change(current);
    if (next === undefined) return current;
    try {
      await compareAndSet(kv, key, encode(next), entry?.revision);
      return next;
    } catch (err) {
      if (!isRevisionConflict(err) || i + 1 >= attempts) throw err;
    }
  }
}

/**
 * Retries an operation that failed transiently (`transient`, default isTransient) with backoff
 * for `deadlineMs`: 100 ms doubling, each delay multiplied by a random 1–2
 * (against retries in step) and then capped at 1 s. Anything else is thrown
 * at once; once the time is up the last error is thrown (p-retry may sleep
 * up to the deadline and try once more). `log` hears each failure that is retried.
 */
export function withRetry<T>(operation: () => Promise<T>, deadlineMs: number, log?: (err: Error) => void, transient: (err: unknown) => boolean = isTransient): Promise<T> {
  return pRetry(() => operation(), {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 100,
    factor: 2,
    maxTimeout: 1000,
    randomize: true,
    maxRetryTime: deadlineMs,
    shouldRetry: ({ error }) => {
      if (!transient(error)) return false;
      log?.(error);
      return true;
    },
  });
}

/**
 * The last value of every key of a bucket in one pass (a watch that stops
 * once the current values are in: the stream's last sequence seen, or
 * nothing left pending): one consumer instead of a read per key. Deleted
 * keys are left out.
 */
export async function snapshot(kv: KV, timeoutMs = 30_000): Promise<Map<string, KvEntry>> {
  const out = new Map<string, KvEntry>();
  // The watch's consumer first, then the stream's last sequence: every key's last message at the consumer's
  // creation is then at or before lastSeq, and comes (in stream order) before any entry at or past it. Read
  // the other way round, a key written in between had its last message after lastSeq and was left out (59 of
  // 200 snapshots missed a key under a put every 5 ms; 0 of 200 in this order).
  // Complete once the stream's last message (or anything later) arrives, or once the consumer has nothing
  // pending (an entry's `delta`, nats.js: the consumer's num_pending after it): the last message may be gone
  // (expired by max_age, or purged), and would never come.
  const iter = await kv.watch({ key: ">" });
  const { state } = (await kv.status()).streamInfo;
  const lastSeq = state.last_seq;
  if (lastSeq === 0 || state.messages === 0) {
    iter.stop();
    return out;
  }
  const timer = setTimeout(() => iter.stop(), timeoutMs);
  let complete = false;
  try {
    for await (const e of iter) {
      if (e.operation === "PUT") out.set(e.key, e as unknown as KvEntry);
      else out.delete(e.key);
      if (e.revision >= lastSeq || e.delta === 0) {
        complete = true;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
    iter.stop();
  }
  if (!complete) throw new Error(`bucket snapshot: not complete within ${timeoutMs} ms (timeout)`);
  return out;
}
