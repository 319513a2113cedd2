import type { KV, KvEntry } from "@nats-io/kv";
import { CorrectiveLog, DecodeError, decodeMessage, warningsOf, type CorrectiveChange, type Report, type ResourceWarning } from "@netfleet/shared";
import { liveValue } from "./kv.ts";

/**
 * A host's corrective drift as `netfleet status` shows it: `count` changes
 * repaired since the host's record began, `last` the newest of them,
 * `changes` the ones kept (newest first, at most CORRECTIVE_RECENT), `at`
 * when the agent last wrote its record (null: never). `error` says why a
 * stored record was not used (it does not decode, or names another host).
 */
export interface CorrectiveStatus {
  count: number;
  last: CorrectiveChange | null;
  changes: CorrectiveChange[];
  at: string | null;
  error?: string;
}

/** The status of a host without a record. */
export const NO_CORRECTIVE: CorrectiveStatus = { count: 0, last: null, changes: [], at: null };

/**
 * A stored corrective log as status shows it. The key is the host's own
 * (only its agent may write it, permissions.ts); a log naming another host
 * or site is refused all the same, like an applied report.
 */
export function correctiveStatus(log: CorrectiveLog | undefined, who: { site: string; host: string }): CorrectiveStatus {
  if (!log) return NO_CORRECTIVE;
  if (log.host !== who.host || log.site !== who.site) return { ...NO_CORRECTIVE, error: `record names ${log.site}/${log.host}` };
  // The agent appends: oldest first.
  const changes = [...log.recent].reverse();
  return { count: log.count, last: changes[0] ?? null, changes, at: log.at };
}

/** Reads and checks a host's record in the corrective bucket; a record that does not decode is an `error`, not a throw. */
export async function readCorrective(kv: KV, who: { site: string; host: string }): Promise<CorrectiveStatus> {
  const entry = liveValue(await kv.get(who.host));
  return entry ? correctiveFromEntry(entry, who) : NO_CORRECTIVE;
}

/** A host's stored corrective entry (read by key or from a bucket snapshot) as status shows it; see readCorrective. */
export function correctiveFromEntry(entry: KvEntry, who: { site: string; host: string }): CorrectiveStatus {
  try {
    return correctiveStatus(decodeMessage(CorrectiveLog, `kv ${entry.bucket}/${entry.key}`, entry.value), who);
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return { ...NO_CORRECTIVE, error: err.message };
  }
}

/** The warnings of a host's last applied report (warningsOf its results' comments); none without a report. */
export function reportWarnings(report: Report | undefined): ResourceWarning[] {
  return report ? warningsOf(report.results) : [];
}
