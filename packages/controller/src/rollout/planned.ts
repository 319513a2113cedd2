import type { CheckReply, HostAssignment } from "@netfleet/shared";
import { observedOf } from "./check.ts";
import type { HostDiffStatus } from "./diff.ts";
import type { PlanFile, PlannedChange, PlannedHost, UnsignedPlan } from "./plan-file.ts";

/** A host as check mode saw it: its target, where its desired entry stood, and its agent's reply. */
export interface CheckedHost {
  host: string;
  role: "backend" | "vmhost";
  assignment: HostAssignment;
  status: HostDiffStatus;
  /** KV revision of the desired entry read (0: none). */
  basedOn: number;
  from: { revision: number; hash: string } | null;
  reply: CheckReply;
}

/** What a plan holds per host for a rollout to apply it exactly: the desired KV revision it was made against and the agent's observed-state hash. */
export interface HostPlan {
  basedOn: number;
  observed: string;
}

/**
 * The plan went stale: the inventory compiles differently now, or a host's
 * desired entry moved. `refusals` has one line per host, naming it.
 */
export class PlanStaleError extends Error {
  readonly refusals: string[];
  constructor(refusals: string[]) {
    super(`the plan no longer fits: ${refusals.join("; ")}`);
    this.name = "PlanStaleError";
    this.refusals = refusals;
  }
}

/** The resources a check reply says would change, with old → new values and diffs where the agent gave them. */
export function plannedChanges(reply: CheckReply): PlannedChange[] {
  return reply.results
    .filter((r) => r.result === null)
    .map((r) => ({ id: r.id, fields: r.changes ?? [], ...(r.fields?.length ? { values: r.fields } : {}), ...(r.diff ? { diff: r.diff } : {}) }));
}

/** The plan file of a check that passed on every host (in the order given: wave order). */
export function makePlan(site: string, checked: readonly CheckedHost[], limit?: readonly string[]): UnsignedPlan {
  const hosts: PlannedHost[] = checked.map((c) => ({
    host: c.host,
    role: c.role,
    assignment: c.assignment.hash,
    status: c.status,
    basedOn: c.basedOn,
    from: c.from,
    observed: observedOf(c.reply)!,
    summary: c.reply.summary,
    changes: plannedChanges(c.reply),
  }));
  return { kind: "netfleet-plan", version: 1, site, createdAt: new Date().toISOString(), ...(limit?.length ? { limit: [...limit] } : {}), hosts };
}

/**
 * Where the inventory no longer compiles to what the plan brings: per plan
 * host, a line naming it when it is gone from the site or its assignment's
 * content hash differs. Empty: the plan fits the inventory.
 */
export function inventoryRefusals(plan: PlanFile, site: string, assignments: readonly HostAssignment[]): string[] {
  if (plan.site !== site) return [`the plan is for site ${plan.site}, the inventory is site ${site}`];
  const compiled = new Map(assignments.map((a) => [a.host, a]));
  const out: string[] = [];
  for (const h of plan.hosts) {
    const a = compiled.get(h.host);
    if (!a) out.push(`${h.host}: no longer in the inventory`);
    else if (a.hash !== h.assignment) out.push(`${h.host}: the inventory compiles to another assignment now (${a.hash.slice(0, 12)}, the plan brings ${h.assignment.slice(0, 12)})`);
    else if (a.role !== h.role) out.push(`${h.host}: role ${a.role} now, ${h.role} in the plan`);
  }
  return out;
}

/** The line refusing a host whose desired entry is at KV revision `now`, not the plan's `basedOn`. */
export function desiredMoved(host: string, now: number, basedOn: number): string {
  return `${host}: its desired state moved since the plan (desired KV revision ${now}, the plan was made against ${basedOn}); make a new plan`;
}
