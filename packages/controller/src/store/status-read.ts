import type { KV, KvEntry } from "@nats-io/kv";
import type { AgentRunning, Report } from "@netfleet/shared";
import PQueue from "p-queue";
import type { AppliedView } from "./applied.ts";
import { NO_CORRECTIVE, correctiveFromEntry, readCorrective, type CorrectiveStatus } from "./corrective.ts";
import type { DesiredStore } from "./desired.ts";
import { snapshot, withRetry } from "./kv.ts";

/**
 * Above this many hosts a status reads each bucket whole (one ordered
 * consumer per bucket, store/kv.ts snapshot) instead of a direct get per
 * host and bucket: 4 gets per host were 40,000 round trips, one after the
 * other, at 10,000 hosts (issue 18). A `--limit` that selects a few hosts
 * keeps the gets (a snapshot reads every key).
 */
export const BULK_STATUS_HOSTS = 32;

/** Reads per host at once where the per-host path is taken (few hosts, or a snapshot that failed). */
const PER_HOST_PARALLEL = 32;

/** How long one host's read (or one bucket's snapshot) retries through a failover (ms). */
const READ_RETRY_MS = 10_000;

/** What a status row is made of, per host: read now, from snapshots or per host. */
export interface HostReads {
  desired(host: string): { revision: number; hash: string } | undefined;
  applied(host: string): Report | undefined;
  corrective(host: string): CorrectiveStatus;
  agent(host: string): AgentRunning | undefined;
}

/** Where HostReads come from (a subset of StatusSources). */
export interface HostReadSources {
  site: string;
  desired: DesiredStore;
  applied: AppliedView;
  corrective: KV;
  agent?: (host: string) => Promise<AgentRunning | undefined>;
  /** Every host's agent report at once (store/objects.ts agentVersionsAll); without it `agent` is asked per host. */
  agents?: () => Promise<Map<string, AgentRunning>>;
}

/**
 * Reads the desired entry, applied report, corrective record and agent
 * version of `names`: each bucket whole when there are more than
 * BULK_STATUS_HOSTS (the four snapshots side by side), else per host
 * (PER_HOST_PARALLEL at once). A value that does not decode counts as none
 * (a corrective record's error is kept, as readCorrective does); a bucket
 * whose snapshot fails is read per host instead; a host whose read fails
 * within READ_RETRY_MS shows none.
 */
export async function readHosts(s: HostReadSources, names: readonly string[]): Promise<HostReads> {
  const bulk = names.length > BULK_STATUS_HOSTS;
  const wanted = new Set(names);
  const [desired, applied, corrective, agents] = await Promise.all([
    bulk ? withRetry(() => s.desired.readHeads(), READ_RETRY_MS).catch(() => undefined) : undefined,
    bulk ? withRetry(() => s.applied.readAll(), READ_RETRY_MS).catch(() => undefined) : undefined,
    bulk ? withRetry(() => snapshot(s.corrective), READ_RETRY_MS).catch(() => undefined) : undefined,
    bulk && s.agents ? s.agents().catch(() => undefined) : undefined,
  ]);
  const perHost = async <T>(have: boolean, read: (host: string) => Promise<T>): Promise<Map<string, T>> => {
    const out = new Map<string, T>();
    if (have) return out;
    const queue = new PQueue({ concurrency: PER_HOST_PARALLEL });
    await queue.addAll(names.map((host) => async () => out.set(host, await read(host))));
    return out;
  };
  const [desiredEach, appliedEach, correctiveEach, agentEach] = await Promise.all([
    perHost(desired !== undefined, async (h) => {
      // As readHeads: another host's envelope in this key is not this host's desired state.
      const e = await withRetry(() => s.desired.read(h), READ_RETRY_MS).catch(() => undefined);
      return e && e.envelope.assignment.host === h ? { revision: e.envelope.revision, hash: e.envelope.assignment.hash } : undefined;
    }),
    perHost(applied !== undefined, async (h) => {
      // As AppliedView.readAll: a report naming another host is none.
      const r = await withRetry(() => s.applied.read(h), READ_RETRY_MS).catch(() => undefined);
      return r?.host === h ? r : undefined;
    }),
    perHost(corrective !== undefined, (h) =>
      withRetry(() => readCorrective(s.corrective, { site: s.site, host: h }), READ_RETRY_MS).catch((err: unknown): CorrectiveStatus => ({ ...NO_CORRECTIVE, error: (err as Error).message })),
    ),
    perHost(agents !== undefined || !s.agent, (h) => s.agent!(h).catch(() => undefined)),
  ]);
  const correctiveOf = (host: string): CorrectiveStatus => {
    if (!corrective) return correctiveEach.get(host) ?? NO_CORRECTIVE;
    const e: KvEntry | undefined = corrective.get(host);
    return e ? correctiveFromEntry(e, { site: s.site, host }) : NO_CORRECTIVE;
  };
  return {
    desired: (h) => (desired ? desired.get(h) : desiredEach.get(h)),
    applied: (h) => (applied ? applied.get(h) : appliedEach.get(h)),
    corrective: (h) => (wanted.has(h) ? correctiveOf(h) : NO_CORRECTIVE),
    agent: (h) => (agents ? agents.get(h) : agentEach.get(h)),
  };
}
