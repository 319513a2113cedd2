import {
  AssignmentRejectedError,
  CheckRequest,
  cutDiff,
  DIFF_MAX_CHARS,
  DecodeError,
  decodeMessage,
  decodeSignedAssignmentValue,
  verifySignedAssignment,
  type CheckReply,
  type CheckedResult,
  type FieldChange,
  type HostAssignment,
  type SignedAssignment,
  type TrustedKeys,
} from "@netfleet/shared";
import type { ResourceResult } from "../resources/types.ts";
import { fieldChanges } from "./corrective.ts";
import { EMPTY_PASS, passResult, type PassResult } from "./pass-result.ts";

/**
 * A check's pass: what would change, per resource id the fields that would
 * (`changes`: names; `details`: values before and after, and the diff of a
 * text resource), and the observed-state hash (engine reconcilePass).
 */
export type CheckResult = PassResult & {
  changes?: Record<string, string[]>;
  details?: Record<string, { fields: FieldChange[]; diff?: string }>;
  observed?: string;
};

/** Diff characters one check reply carries in all; past them a resource's diff is cut to a note (NATS max_payload is 1 MiB). */
export const REPLY_DIFF_CHARS = 512 * 1024;

/** A check pass's results (engine reconcilePass in check mode) as the reply carries them. */
export function checkResult(results: readonly ResourceResult[], observed: string): CheckResult {
  return {
    ...passResult(results),
    changes: Object.fromEntries(results.map((r) => [r.id, Object.keys(r.changes)])),
    details: Object.fromEntries(results.filter((r) => Object.keys(r.changes).length > 0 || r.diff).map((r) => [r.id, { fields: fieldChanges(r.changes).changes, ...(r.diff ? { diff: r.diff } : {}) }])),
    observed,
  };
}

/** Who answers, and with what. */
export interface CheckContext {
  site: string;
  host: string;
  /** The controller's key (PEM), or the keys the agent trusts across a rotation (desired.ts SigningTrust). */
  signingKeyPem: string | TrustedKeys;
  /** The envelope in force (its revision and hash go in the reply). */
  current: SignedAssignment | undefined;
  /** Runs the check: what would change to reach this assignment, with no mutating command. */
  run: (assignment: HostAssignment) => Promise<CheckResult>;
  log: (event: Record<string, unknown>) => void;
}

/**
 * Answers a check request (`netfleet rollout --check`): its envelope is
 * verified like a desired assignment (signed, this site and host), any
 * revision; nothing is applied. A request naming another host, or an
 * envelope that does not verify, is answered `ok: false` with the reason; an
 * error of the check itself too.
 */
export async function answerCheck(ctx: CheckContext, subject: string, data: Uint8Array): Promise<CheckReply> {
  try {
    const request = decodeMessage(CheckRequest, subject, data);
    if (request.host !== ctx.host || request.site !== ctx.site) return checkReply(ctx, false, EMPTY_PASS, "check request names another host");
    let envelope: SignedAssignment;
    try {
      envelope = verifySignedAssignment(decodeSignedAssignmentValue(subject, request.envelope), ctx.signingKeyPem, 0, { site: ctx.site, host: ctx.host });
    } catch (err) {
      if (err instanceof DecodeError || err instanceof AssignmentRejectedError) {
        ctx.log({ event: "check-rejected", error: err.message });
        return checkReply(ctx, false, EMPTY_PASS, err.message);
      }
      throw err;
    }
    const pass = await ctx.run(envelope.assignment);
    ctx.log({ event: "checked", hash: envelope.assignment.hash, ...pass.summary });
    return checkReply(ctx, true, pass);
  } catch (err) {
    return checkReply(ctx, false, EMPTY_PASS, (err as Error).message);
  }
}

function checkReply(ctx: CheckContext, ok: boolean, pass: CheckResult, error?: string): CheckReply {
  return {
    kind: "check-result",
    site: ctx.site,
    host: ctx.host,
    revision: ctx.current?.revision ?? 0,
    hash: ctx.current?.assignment.hash ?? null,
    ok,
    ...(error ? { error: error.slice(0, 2000) } : {}),
    summary: pass.summary,
    results: checkedResults(pass),
    ...(pass.observed ? { observed: pass.observed } : {}),
    at: new Date().toISOString(),
  };
}

/** Each result with its field names, values and diff; the diffs cut to DIFF_MAX_CHARS each and REPLY_DIFF_CHARS in all. */
export function checkedResults(pass: CheckResult): CheckedResult[] {
  let budget = REPLY_DIFF_CHARS;
  return pass.results.map((r) => {
    const out: CheckedResult = { ...r };
    const changes = pass.changes?.[r.id];
    if (changes?.length) out.changes = changes.slice(0, 200);
    const detail = pass.details?.[r.id];
    if (detail?.fields.length) out.fields = detail.fields.slice(0, 64);
    if (detail?.diff) {
      const room = Math.min(DIFF_MAX_CHARS, budget);
      out.diff = room >= 200 ? cutDiff(detail.diff, room) : "[diff not shown: this reply's diffs are over their size limit; netfleet-agent apply --check on the host shows it]";
      budget -= out.diff.length;
    }
    return out;
  });
}
