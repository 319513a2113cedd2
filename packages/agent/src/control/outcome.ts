import type { ResourceResult } from "../resources/types.ts";
import { summarize } from "../engine.ts";
import type { ApplyOutcome } from "./agent-client.ts";

/** A reconcile pass's results as the agent reports them (AgentDaemon.lastResults → report). */
export function outcomeOf(results: readonly ResourceResult[]): ApplyOutcome {
  return {
    summary: summarize(results),
    results: results.map((r) => ({ id: r.id, result: r.result, ...(r.comment ? { comment: (r.error ?? r.comment).slice(0, 2000) } : {}) })),
  };
}
