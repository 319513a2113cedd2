import { canonicalJson, resourceId, type HostAssignment, type Report, type ResourceSpec } from "@netfleet/shared";

/** What an assignment changes on a host, by resource id (e.g. `sysctl[net.ipv4.ip_forward]`). */
export interface ResourceDiff {
  added: string[];
  removed: string[];
  /** Resources in both, with the names of the spec fields whose values differ (sorted). */
  changed: { id: string; fields: string[] }[];
}

/**
 * Where a host stands against the assignment a rollout brings: `new` (nothing desired yet),
 * `changed` (another document desired), `unconverged` (the same document desired but not
 * verified applied at that revision) or `unchanged` (desired and applied without failures).
 */
export type HostDiffStatus = "new" | "changed" | "unchanged" | "unconverged";

function specFields(spec: ResourceSpec): Record<string, string> {
  return Object.fromEntries(Object.entries(spec).map(([k, v]) => [k, canonicalJson(v)]));
}

/** Per resource: added, removed, and which fields changed, from `from` (undefined: no assignment yet) to `to`. */
export function diffAssignments(from: HostAssignment | undefined, to: HostAssignment): ResourceDiff {
  const before = new Map((from?.resources ?? []).map((r) => [resourceId(r), r]));
  const after = new Map(to.resources.map((r) => [resourceId(r), r]));
  const diff: ResourceDiff = { added: [], removed: [], changed: [] };
  for (const [id, spec] of after) {
    const old = before.get(id);
    if (!old) {
      diff.added.push(id);
      continue;
    }
    const a = specFields(old);
    const b = specFields(spec);
    const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]).sort();
    if (fields.length) diff.changed.push({ id, fields });
  }
  for (const id of before.keys()) if (!after.has(id)) diff.removed.push(id);
  return diff;
}

/**
 * The status of a host whose desired entry is `desired` (undefined: none) and whose agent last
 * reported `applied` (undefined: never), against the target assignment's content hash.
 */
export function hostDiffStatus(
  desired: { revision: number; assignment: { hash: string } } | undefined,
  applied: Pick<Report, "revision" | "hash" | "summary"> | undefined,
  targetHash: string,
): HostDiffStatus {
  if (!desired) return "new";
  if (desired.assignment.hash !== targetHash) return "changed";
  const converged = applied !== undefined && applied.revision === desired.revision && applied.hash === desired.assignment.hash && applied.summary.failed === 0;
  return converged ? "unchanged" : "unconverged";
}

/**
 * Why `report` is not the verified success of assignment `revision` with content `hash`
 * (rolled back by the agent's lockout protection, another revision, another document, or failed
 * resources); undefined when it is.
 */
export function verdict(report: Report, revision: number, hash: string): string | undefined {
  if (report.rolledBack && (report.rolledBackRevision ?? 0) >= revision) return `the agent undid revision ${report.rolledBackRevision} (lost NATS after applying: lockout protection)`;
  if (report.revision !== revision) return `the host reports revision ${report.revision}, not ${revision} (someone published meanwhile)`;
  if (report.hash !== hash) return `the host reports assignment ${report.hash?.slice(0, 12)}, not ${hash.slice(0, 12)}`;
  if (report.summary.failed > 0) {
    const ids = report.results.filter((r) => r.result === false).map((r) => r.id);
    return `${report.summary.failed} resource(s) failed: ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", ..." : ""}`;
  }
  return undefined;
}
