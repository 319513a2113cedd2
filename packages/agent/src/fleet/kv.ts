import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

/** One key's last value in a KV bucket: the stored bytes, its stream sequence, and the KV operation (`DEL`/`PURGE`: a delete marker, empty data). */
export interface StoredEntry {
  data: Uint8Array;
  seq: number;
  operation: "PUT" | "DEL" | "PURGE";
  /** `data` parsed as JSON (strict UTF-8, JSON.parse), when a reader parsed it already (readDesired): decoding then starts from it rather than parsing the bytes again. */
  json?: { value: unknown };
}

/**
 * A bucket view bound without any JetStream API call: an agent may publish
 * only to its keys' subjects and their direct gets (controller
 * nats/permissions.ts), never `$JS.API.INFO` or `STREAM.INFO`. Reads are
 * direct gets by subject (`$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`),
 * which every netfleet bucket allows. `timeoutMs` bounds each request.
 */
function bucket(nc: NatsConnection, name: string, timeoutMs: number): Promise<KV> {
  let views = boundViews.get(nc);
  if (!views) boundViews.set(nc, (views = new Map()));
  const key = `${timeoutMs} ${name}`;
  let view = views.get(key);
  if (!view) {
    // Bounded: the timeouts near a confirmation's deadline vary (lockout.ts); the common ones come back at once.
    if (views.size >= MAX_VIEWS_PER_CONNECTION) views.clear();
    view = new Kvm(jetstream(nc, { timeout: timeoutMs, checkAPI: false })).open(name, { allow_direct: true });
    views.set(key, view);
    // A view that failed to bind is not kept: the next read binds again.
    view.catch(() => {
      if (views.get(key) === view) views.delete(key);
    });
  }
  return view;
}

/**
 * Bucket views by connection, then by timeout and bucket name. A view is
 * the stream and subject names of one bucket on one connection, plus the
 * JetStream client's request timeout (nats.js kv Bucket.bind: no state
 * kept between gets and puts), so one is reused for every read and write
 * of that bucket on that connection instead of being built for each (a
 * JetStream client, a manager and a bind per request: 0.45 s of an agent
 * process's 19 s busy over 5,000 applies, issue 18). A connection that is
 * replaced takes its views with it (WeakMap).
 */
const boundViews = new WeakMap<NatsConnection, Map<string, Promise<KV>>>();
const MAX_VIEWS_PER_CONNECTION = 16;

/**
 * Reads a key's last value. Resolves undefined when the key has none; throws
 * on a timeout (`timeoutMs`), a permission violation or any other status.
 */
export async function readKey(nc: NatsConnection, name: string, key: string, timeoutMs = 2000): Promise<StoredEntry | undefined> {
  const entry = await (await bucket(nc, name, timeoutMs)).get(key);
  return entry ? { data: entry.value, seq: entry.revision, operation: entry.operation } : undefined;
}

/** Puts a value to a key (the stream leader acknowledges): resolves with its stream sequence; throws on a refusal or a timeout. */
export async function putKey(nc: NatsConnection, name: string, key: string, data: Uint8Array, timeoutMs = 2000): Promise<number> {
  return (await bucket(nc, name, timeoutMs)).put(key, data);
}
