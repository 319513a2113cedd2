import type { NatsConnection } from "@nats-io/transport-node";
import { appliedBucket, encodeMessage, type Report } from "@netfleet/shared";
import { pause } from "./connection.ts";
import { putKey, readKey } from "./kv.ts";

/**
 * The lockout check after an apply: the report is stored in this host's key
 * of the applied bucket (the stream leader acknowledges) and read back, on
 * whichever connection is in force (`connection()`: it is replaced when one
 * closes), before `deadlineMs` runs out. Tries again every 250 ms; false
 * when the deadline passes (or `signal` aborts) without a round trip, and
 * at once when there is no connection at all at the start (none was ever
 * set up: nothing to wait for).
 */
export async function confirmReport(
  connection: () => NatsConnection | undefined,
  site: string,
  report: Report,
  deadlineMs: number,
  signal: AbortSignal,
  log: (event: Record<string, unknown>) => void,
): Promise<boolean> {
  if (!connection()) return false;
  const bucket = appliedBucket(site);
  const deadline = Date.now() + deadlineMs;
  const data = encodeMessage(report);
  while (!signal.aborted) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) return false;
    const nc = connection();
    try {
      if (!nc || nc.isClosed()) throw new Error("not connected");
      const seq = await putKey(nc, bucket, report.host, data, Math.min(remaining, 2000));
      const back = await readKey(nc, bucket, report.host, Math.max(1, Math.min(deadline - Date.now(), 2000)));
      if (back && back.seq >= seq) return true;
    } catch (err) {
      log({ event: "confirm-retry", error: (err as Error).message });
    }
    await pause(Math.min(250, Math.max(0, deadline - Date.now())), signal);
  }
  return false;
}
