/**
 * Warnings in resource comments. A resource's plan may carry a comment that
 * does not block convergence but that the operator must see (e.g. the
 * firewall's `foreign-drop: ...`: another nftables table drops traffic our
 * table accepts). The engine puts the plan's comment into the result's
 * comment, after `changed; ` when the pass changed something; the agent
 * reports comments with every result (`Report.results[].comment`). A
 * comment part that begins with a known prefix is a warning; `netfleet
 * status` lists them per host.
 */

/** Comment prefixes that mark a warning. `warning:` is the generic one; add a prefix here for a new kind. */
export const WARNING_PREFIXES = ["foreign-drop:", "warning:"] as const;

/** A warning found in a resource's comment: `message` is the comment from the prefix to its end. */
export interface ResourceWarning {
  id: string;
  message: string;
}

/**
 * The warnings in a pass's results: for each result, the first place where
 * its comment (at its start, or after `; `) begins with a WARNING_PREFIXES
 * entry, to the comment's end. Results without a comment have none.
 */
export function warningsOf(results: readonly { id: string; comment?: string | undefined }[]): ResourceWarning[] {
  const out: ResourceWarning[] = [];
  for (const r of results) {
    const comment = r.comment ?? "";
    let at = -1;
    for (const prefix of WARNING_PREFIXES) {
      const i = comment.startsWith(prefix) ? 0 : comment.indexOf(`; ${prefix}`);
      const start = i > 0 ? i + 2 : i;
      if (start >= 0 && (at < 0 || start < at)) at = start;
    }
    if (at >= 0) out.push({ id: r.id, message: comment.slice(at) });
  }
  return out;
}
