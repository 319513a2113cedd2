import type { KV } from "@nats-io/kv";
import type { Host, ResourceWarning, ResultsSummary } from "@netfleet/shared";
import type { AppliedView } from "./applied.ts";
import { NO_CORRECTIVE, readCorrective, reportWarnings, type CorrectiveStatus } from "./corrective.ts";
import type { DesiredStore } from "./desired.ts";
import { withRetry } from "./kv.ts";
import type { HostRecord, HostRegistry, HostState, StoredFacts } from "./registry.ts";

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
  agent?: (host: string) => Promise<{ version: string; sha256: string | null; state: string; reason?: string; at: string } | undefined>;
}

/**
 * One row per inventory or enrolled host, sorted by name. A host whose
 * desired, applied or corrective value cannot be read in 10 s shows none
 * (the corrective error is kept in its row).
 * @throws when the registry cannot be read within `retryMs`.
 */
export async function readStatus(s: StatusSources): Promise<HostStatus[]> {
  // Right after a failover the streams may still be electing leaders: reads are retried like writes.
  const records = new Map((await withRetry(() => s.registry.list(), s.retryMs)).map((r) => [r.host, r]));
  const inventory = new Set(s.hosts.map((h) => h.name));
  const rows: HostStatus[] = [];
  for (const host of hostNames(inventory, records.keys())) {
    const record = records.get(host);
    const desiredEntry = await withRetry(() => s.desired.read(host), 10_000).catch(() => undefined);
    const report = await withRetry(() => s.applied.read(host), 10_000).catch(() => undefined);
    const corrective = await withRetry(() => readCorrective(s.corrective, { site: s.site, host }), 10_000).catch(
      (err: unknown): CorrectiveStatus => ({ ...NO_CORRECTIVE, error: (err as Error).message }),
    );
    const running = s.agent ? await s.agent(host).catch(() => undefined) : undefined;
    const desired = desiredEntry ? { revision: desiredEntry.envelope.revision, hash: desiredEntry.envelope.assignment.hash } : null;
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
      warnings: reportWarnings(report),
      agent: running ? { version: running.version, sha256: running.sha256, state: running.state, ...(running.reason ? { reason: running.reason } : {}), at: running.at } : null,
    });
  }
  return rows;
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
