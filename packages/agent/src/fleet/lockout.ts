import type { NatsConnection } from "@nats-io/transport-node";
import { appliedBucket } from "@netfleet/shared";
import { pause } from "./connection.ts";
import { putKey } from "./kv.ts";

/**
 * The lockout check after an apply: the report (`data`, encoded once by the
 * caller, which publishes the same bytes once confirmed) is stored in the
 * key `host` of the applied bucket, on whichever connection is in force
 * (`connection()`: it is replaced when one closes), before `deadlineMs` runs
 * out. The put's acknowledgement is the round trip: it is a JetStream PubAck,
 * a reply on this agent's own inbox (nats.js kv `_put` resolves with the
 * PubAck's `seq`; jetstream `publish` throws on an error reply or one without
 * a stream), and nats-server sends it only after the message is stored: the
 * stream's leader replies after `store.StoreMsg` succeeded (nats-server
 * v2.9.10 server/stream.go processJetStreamMsg, "Send response here"), and on
 * a replicated stream the leader stores it only once the raft group has
 * committed the entry, i.e. a quorum holds it (jetstream_cluster.go
 * processClusteredInboundJetStreamMsg proposes and answers only a failed
 * proposal; applyStreamEntries stores committed entries and the leader
 * answers). So an acknowledged put proves both directions (the agent reached
 * the server, the server reached the agent) and the storage, which is what
 * a read back proved before. Tries again every 250 ms; false when the
 * deadline passes (or `signal` aborts) without an acknowledged put, and at
 * once when there is no connection at all at the start (none was ever set
 * up: nothing to wait for).
 */
export async function confirmReport(
  connection: () => NatsConnection | undefined,
  site: string,
  host: string,
  data: Uint8Array,
  deadlineMs: number,
  signal: AbortSignal,
  log: (event: Record<string, unknown>) => void,
): Promise<boolean> {
  if (!connection()) return false;
  const bucket = appliedBucket(site);
  const deadline = Date.now() + deadlineMs;
  while (!signal.aborted) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) return false;
    const nc = connection();
    try {
      if (!nc || nc.isClosed()) throw new Error("not connected");
      const seq = await putKey(nc, bucket, host, data, Math.min(remaining, 2000));
      if (seq > 0) return true;
    } catch (err) {
      log({ event: "confirm-retry", error: (err as Error).message });
    }
    await pause(Math.min(250, Math.max(0, deadline - Date.now())), signal);
  }
  return false;
}
