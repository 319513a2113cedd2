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
 * a read back proved before. Tries again 250 ms after a failed attempt;
 * false when the deadline passes (or `signal` aborts) without an
 * acknowledged put, and at once when there is no connection at all at the
 * start (none was ever set up: nothing to wait for).
 *
 * Each attempt waits for its acknowledgement CONFIRM_ATTEMPT_MS, then twice
 * as long as the one before (always within the deadline). A reply is only
 * lost with its connection (nats.js does not fail a request in flight when
 * the connection drops: it times out) or while a clustered stream elects a
 * leader; otherwise a put that timed out was a slow one, and is stored all
 * the same. With 2 s per attempt, 3 of 8 runs of the 10,000-host bench had
 * 1,014, 1,390 and 1,523 such retries (issue 18; each error "timeout"), each
 * one another put, PubAck and controller delivery while the server was
 * busiest; with 5 s, none in the 5 runs after.
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
  for (let attempt = 0; !signal.aborted; attempt++) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) return false;
    const nc = connection();
    try {
      if (!nc || nc.isClosed()) throw new Error("not connected");
      const seq = await putKey(nc, bucket, host, data, confirmAttemptMs(attempt, remaining));
      if (seq > 0) return true;
    } catch (err) {
      log({ event: "confirm-retry", error: (err as Error).message });
    }
    await pause(Math.min(250, Math.max(0, deadline - Date.now())), signal);
  }
  return false;
}

/** How long the first confirmation attempt waits for its acknowledgement, ms; each later one waits twice as long as the one before (confirmReport). */
export const CONFIRM_ATTEMPT_MS = 5000;

/**
 * How long confirmation attempt `attempt` (0: the first) waits for its acknowledgement, ms: CONFIRM_ATTEMPT_MS doubled
 * per attempt before it (at most 16 times), and never beyond `remainingMs`, what is left of the deadline.
 */
export function confirmAttemptMs(attempt: number, remainingMs: number): number {
  return Math.max(0, Math.min(remainingMs, CONFIRM_ATTEMPT_MS * 2 ** Math.min(Math.max(0, attempt), 4)));
}
