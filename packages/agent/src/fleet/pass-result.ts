import type { Report, ReportedResult, ResultsSummary, SignedAssignment } from "@netfleet/shared";
import { summarize } from "../engine.ts";
import type { ResourceResult } from "../resources/types.ts";

/** The results of one pass (an apply, a rollback, a check, a drift repair) as the agent reports them: summary and per-resource results. */
export interface PassResult {
  summary: ResultsSummary;
  results: ReportedResult[];
}

/** Nothing done. */
export const EMPTY_PASS: PassResult = { summary: { ok: 0, changed: 0, failed: 0, pending: 0 }, results: [] };

/** A reconcile pass's results as the agent reports them (AgentDaemon.lastResults → report). */
export function passResult(results: readonly ResourceResult[]): PassResult {
  return {
    summary: summarize(results),
    results: results.map((r) => ({ id: r.id, result: r.result, ...(r.comment ? { comment: (r.error ?? r.comment).slice(0, 2000) } : {}) })),
  };
}

/** An apply that threw: one failed result named `apply` carrying the error's message. */
export function failedPassResult(err: unknown): PassResult {
  return { ...EMPTY_PASS, summary: { ...EMPTY_PASS.summary, failed: 1 }, results: [{ id: "apply", result: false, comment: (err as Error)?.message ?? String(err) }] };
}

/**
 * The report of a pass on `envelope` (none: revision 0, hash null), as an
 * agent stores and publishes it: the site and host it speaks for, whether
 * the pass undid a revision, the pass's summary and results, stamped now.
 */
export function passReport(where: { site: string; host: string }, envelope: SignedAssignment | undefined, pass: PassResult, rolledBack: boolean): Report {
  return {
    kind: "report",
    site: where.site,
    host: where.host,
    revision: envelope?.revision ?? 0,
    hash: envelope?.assignment.hash ?? null,
    rolledBack,
    summary: pass.summary,
    results: pass.results,
    at: new Date().toISOString(),
  };
}

/**
 * Whether a pass is the engine's refusal of a saved plan: its one result is
 * the `plan` pseudo-resource, failed (engine.ts reconcilePass with
 * expectObserved; no resource id is "plan", they are "<kind>:<name>").
 */
export function planRefused(pass: PassResult): boolean {
  return pass.results.length === 1 && pass.results[0]!.id === "plan" && pass.results[0]!.result === false;
}
