import { jetstream } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

/** One key's last value in a KV bucket: the stored bytes, its stream sequence, and the KV operation (`DEL`/`PURGE`: a delete marker, empty data). */
export interface StoredEntry {
  data: Uint8Array;
  seq: number;
  operation: "PUT" | "DEL" | "PURGE";
}

/**
 * A bucket view bound without any JetStream API call: an agent may publish
 * only to its keys' subjects and their direct gets (controller
 * nats/permissions.ts), never `$JS.API.INFO` or `STREAM.INFO`. Reads are
 * direct gets by subject (`$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`),
 * which every netfleet bucket allows. `timeoutMs` bounds each request.
 */
function bucket(nc: NatsConnection, name: string, timeoutMs: number): Promise<KV> {
  return new Kvm(jetstream(nc, { timeout: timeoutMs, checkAPI: false })).open(name, { allow_direct: true });
}

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
