import type { ReportedResult, ResultsSummary } from "@netfleet/shared";
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
