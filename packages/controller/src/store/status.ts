import type { KV } from "@nats-io/kv";
import { counterWarnings, type AgentRunning, type CountersSummary, type Host, type ResourceWarning, type ResultsSummary } from "@netfleet/shared";
import type { AppliedView } from "./applied.ts";
import PQueue from "p-queue";
import { reportWarnings, type CorrectiveStatus } from "./corrective.ts";
import type { DesiredStore } from "./desired.ts";
import { withRetry } from "./kv.ts";
import type { HostRecord, HostRegistry, HostState, StoredFacts } from "./registry.ts";
import { readHosts } from "./status-read.ts";
import { selectLimit } from "../select/limit.ts";

/** One row of `netfleet status` (and its --json): a host's enrollment, desired vs applied state, drift and warnings. */
export interface HostStatus {
  host: string;
  inventory: boolean;
  enrolled: boolean;
  state: HostState | "unenrolled";
  reason: string | null;
  /** ISO 8601: the latest of the registry's lastSeen, the last report, and what this process heard. */
  lastSeen: string | null;
  desired: { revision: number; hash: string } | null;
  applied: { revision: number; hash: string | null; rolledBack: boolean; rolledBackRevision?: number; at: string } | null;
  /** Desired and applied differ (or nothing is applied yet while something is desired). */
  drift: boolean;
  summary: ResultsSummary | null;
  failures: { id: string; comment?: string }[];
  /** Drift the agent repaired on its own (count, last, the last few with before/after): store/corrective.ts. */
  corrective: CorrectiveStatus;
  /** Warnings in the last report's resource comments (e.g. `foreign-drop:`), see reportWarnings. */
  warnings: ResourceWarning[];
  /**
   * The agent version the host runs, as its agent last wrote it to
   * `run.<host>` of KV `nf_<site>_agent` (agent fleet/upgrade.ts): version,
   * its bundle's sha256 (null: not run from a bundle), the upgrade state
   * ("running", "upgrading", "refused", "reverted", "failed", "unsupported"),
   * the reason of a refusal or revert, when. Null: never reported (an agent
   * without upgrade support, or a site that never rolled out an agent).
   */
  agent: { version: string; sha256: string | null; state: string; reason?: string; at: string } | null;
  /**
   * The host's counters summary as its agent answered it now (nats/show.ts
   * countersSource; protocol/counters.ts): bonds and their members, errors
   * and drops, what rose since the agent's earlier read. Null: not asked
   * (no source, the host not approved), or no answer in time. Its
   * warnings (a bond member down, LACP not negotiated, errors or drops
   * rising) are in `warnings`, ids `counters-*`.
   */
  counters?: CountersSummary | null;
}

/** Where the status rows are read from. */
export interface StatusSources {
  site: string;
  /** Inventory hosts: each has a row, enrolled or not. */
  hosts: readonly Host[];
  registry: HostRegistry;
  desired: DesiredStore;
  applied: AppliedView;
  /** The corrective bucket (one value per host). */
  corrective: KV;
  /** When this process last heard from the host (Presence.lastSeen). */
  lastSeen: (host: string) => string | undefined;
  /** How long the registry read retries through a failover (ms). */
  retryMs: number;
  /** What the host's agent says it runs (store/objects.ts agentVersionSource); without it, every row's `agent` is null. */
  agent?: (host: string) => Promise<AgentRunning | undefined>;
  /** Every host's agent version at once (store/objects.ts agentVersionsAll): used instead of `agent` when the status covers many hosts. */
  agents?: () => Promise<Map<string, AgentRunning>>;
  /** `--limit` terms (select/limit.ts): only the hosts they select, among the inventory's and the enrolled ones. */
  limit?: readonly string[];
  /** A host's counters summary (nats/show.ts countersSource), asked of approved hosts only; without it, every row's `counters` is null. */
  counters?: (host: string) => Promise<CountersSummary | undefined>;
}

/**
 * One row per inventory or enrolled host (of those `limit` selects), sorted by name. A host whose
 * desired, applied or corrective value cannot be read in 10 s shows none
 * (the corrective error is kept in its row).
 * @throws when the registry cannot be read within `retryMs`; LimitError for a `limit` that selects nothing.
 */
export async function readStatus(s: StatusSources): Promise<HostStatus[]> {
  // Right after a failover the streams may still be electing leaders: reads are retried like writes.
  const records = new Map((await withRetry(() => s.registry.list(), s.retryMs)).map((r) => [r.host, r]));
  const inventory = new Set(s.hosts.map((h) => h.name));
  // An inventory host the one-pass listing lacks is read by its key before it is called unenrolled (and so
  // unreachable, exit 2): the listing's snapshot can miss a record written while it starts (store/kv.ts).
  const missing = [...inventory].filter((host) => !records.has(host));
  const gets = new PQueue({ concurrency: MISSING_RECORD_READS });
  await gets.addAll(
    missing.map((host) => async () => {
      const record = await withRetry(() => s.registry.get(host), 10_000).catch(() => undefined);
      if (record) records.set(host, record);
    }),
  );
  let names = hostNames(inventory, records.keys());
  if (s.limit?.length) {
    const selected = selectLimit([...s.hosts, ...names.filter((n) => !inventory.has(n)).map((name) => ({ name }))], s.limit, s.site);
    names = names.filter((n) => selected.has(n));
  }
  // The stores and the agents' counters side by side: a fleet's buckets are read whole (status-read.ts).
  const [reads, counters] = await Promise.all([readHosts(s, names), countersOf(s, names, records)]);
  const rows: HostStatus[] = [];
  for (const host of names) {
    const record = records.get(host);
    const desiredHead = reads.desired(host);
    const report = reads.applied(host);
    const corrective = reads.corrective(host);
    const running = reads.agent(host);
    const desired = desiredHead ? { revision: desiredHead.revision, hash: desiredHead.hash } : null;
    const applied = report
      ? { revision: report.revision, hash: report.hash, rolledBack: report.rolledBack, ...(report.rolledBackRevision ? { rolledBackRevision: report.rolledBackRevision } : {}), at: report.at }
      : null;
    const seen = [record?.lastSeen, report?.at, s.lastSeen(host)].filter((t): t is string => !!t).sort().at(-1) ?? null;
    rows.push({
      host,
      inventory: inventory.has(host),
      enrolled: record !== undefined,
      state: record?.state ?? "unenrolled",
      reason: record?.reason ?? null,
      lastSeen: seen,
      desired,
      applied,
      drift: desired !== null && (applied === null || applied.hash !== desired.hash || applied.revision !== desired.revision),
      summary: report?.summary ?? null,
      failures: (report?.results ?? []).filter((r) => r.result === false).map((r) => ({ id: r.id, ...(r.comment ? { comment: r.comment } : {}) })),
      corrective,
      warnings: [...reportWarnings(report), ...(counters.has(host) ? counterWarnings(counters.get(host)!) : [])],
      agent: running ? { version: running.version, sha256: running.sha256, state: running.state, ...(running.reason ? { reason: running.reason } : {}), at: running.at } : null,
      counters: counters.get(host) ?? null,
    });
  }
  return rows;
}

/** Inventory hosts missing from the registry listing read by key at once (see readStatus). */
const MISSING_RECORD_READS = 32;

/** How many hosts' counters are asked at once. */
const COUNTERS_PARALLEL = 8;

/** How long all counter requests of one status may take together (ms): a large fleet's status stays bounded; hosts not asked by then have none. */
const COUNTERS_BUDGET_MS = 30_000;

/** The counters summaries of the approved hosts among `names` (s.counters, COUNTERS_PARALLEL at once, within COUNTERS_BUDGET_MS). */
async function countersOf(s: StatusSources, names: readonly string[], records: ReadonlyMap<string, HostRecord>): Promise<Map<string, CountersSummary>> {
  const out = new Map<string, CountersSummary>();
  const source = s.counters;
  if (!source) return out;
  const asked = names.filter((h) => records.get(h)?.state === "approved");
  const until = Date.now() + COUNTERS_BUDGET_MS;
  let next = 0;
  const worker = async () => {
    while (next < asked.length && Date.now() < until) {
      const host = asked[next++]!;
      const summary = await source(host).catch(() => undefined);
      if (summary) out.set(host, summary);
    }
  };
  await Promise.all(Array.from({ length: Math.min(COUNTERS_PARALLEL, asked.length) }, worker));
  return out;
}

/** One row of `netfleet hosts` (and its --json): a host's enrollment as the registry holds it. */
export interface HostEnrollment {
  host: string;
  inventory: boolean;
  state: HostState | "unenrolled";
  reason: string | null;
  matchedBy: HostRecord["matchedBy"];
  /** The hostname the agent claimed (may differ from `host` when matched by MAC). */
  claimedName: string | null;
  agentVersion: StoredFacts["agentVersion"] | null;
  ovsVersion: StoredFacts["ovsVersion"] | null;
  libvirtVersion: StoredFacts["libvirtVersion"] | null;
  /** The kernel features the agent found (8021q, bonding, openvswitch). */
  kernel: StoredFacts["kernel"] | null;
  /** ISO 8601 times from the registry. */
  firstSeen: string | null;
  lastSeen: string | null;
  approvedAt: string | null;
}

/**
 * One row per inventory or enrolled host, sorted by name, from one pass over the registry.
 * @throws when the registry cannot be read.
 */
export async function readEnrollments(registry: HostRegistry, hosts: readonly Host[]): Promise<HostEnrollment[]> {
  const records = new Map((await registry.list()).map((r) => [r.host, r]));
  const inventory = new Set(hosts.map((h) => h.name));
  return hostNames(inventory, records.keys()).map((host) => {
    const r = records.get(host);
    return {
      host,
      inventory: inventory.has(host),
      state: r?.state ?? "unenrolled",
      reason: r?.reason ?? null,
      matchedBy: r?.matchedBy ?? null,
      claimedName: r?.facts.hostname ?? null,
      agentVersion: r?.facts.agentVersion ?? null,
      ovsVersion: r?.facts.ovsVersion ?? null,
      libvirtVersion: r?.facts.libvirtVersion ?? null,
      kernel: r?.facts.kernel ?? null,
      firstSeen: r?.firstSeen ?? null,
      lastSeen: r?.lastSeen ?? null,
      approvedAt: r?.approvedAt ?? null,
    };
  });
}

/** The inventory's hosts and the enrolled ones, once each, sorted. */
function hostNames(inventory: ReadonlySet<string>, enrolled: Iterable<string>): string[] {
  return [...new Set([...inventory, ...enrolled])].sort();
}

/**
 * How `netfleet status` judges a host (its exit code is the worst over the rows, see statusExitCode):
 * - `converged`: approved, seen within the reachability window, its last report applied the desired revision
 *   (same revision and hash), not rolled back, nothing failed;
 * - `drift`: approved and reachable, but nothing rolled out yet, or the applied revision is not the desired one,
 *   or the last pass rolled back;
 * - `failed`: approved and reachable, and its last report has failed resources;
 * - `not-approved`: a pending claim (quarantined) or a rejected host the inventory lists;
 * - `unreachable`: an inventory host never enrolled, or not heard from (heartbeat, report) for `unreachableAfterMs`;
 * - `ignored`: an enrolled host the inventory does not list (no longer managed).
 */
export type HostHealth = "converged" | "drift" | "failed" | "not-approved" | "unreachable" | "ignored";

/**
 * A status row's health at `now` (ms). `unreachableAfterMs`: how long without a heartbeat or report a host
 * counts as unreachable; the registry's lastSeen is written at most every 30 s (Presence), heartbeats come
 * every 15 s by default, so anything under ~45 s calls live hosts unreachable.
 */
export function hostHealth(row: Pick<HostStatus, "inventory" | "state" | "lastSeen" | "desired" | "applied" | "drift" | "failures" | "summary">, now: number, unreachableAfterMs: number): HostHealth {
  if (!row.inventory) return "ignored";
  if (row.state === "unenrolled") return "unreachable";
  if (row.state !== "approved") return "not-approved";
  if (row.lastSeen === null || now - Date.parse(row.lastSeen) > unreachableAfterMs) return "unreachable";
  if (row.failures.length > 0 || (row.summary?.failed ?? 0) > 0) return "failed";
  if (row.desired === null || row.drift || row.applied?.rolledBack) return "drift";
  return "converged";
}

/** Exit codes of `netfleet status`, for monitoring systems. */
export const STATUS_EXIT = {
  /** Every (selected) inventory host converged. */
  converged: 0,
  /** Some host drifted, failed, or waits for approval (none unreachable). */
  drift: 1,
  /** Some host is unreachable (never enrolled, or not heard from in time); wins over drift. */
  unreachable: 2,
  /** The status could not be read: no controller state, NATS not reachable, an invalid site folder. */
  unknown: 3,
} as const;

/** The exit code for these healths: unreachable (2) over drift/failed/not-approved (1) over converged (0); `ignored` rows do not count. */
export function statusExitCode(health: readonly HostHealth[]): number {
  if (health.includes("unreachable")) return STATUS_EXIT.unreachable;
  if (health.some((h) => h === "drift" || h === "failed" || h === "not-approved")) return STATUS_EXIT.drift;
  return STATUS_EXIT.converged;
}
