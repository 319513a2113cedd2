import {
  AssignmentRejectedError,
  CheckRequest,
  DecodeError,
  decodeMessage,
  decodeSignedAssignmentValue,
  verifySignedAssignment,
  type CheckReply,
  type HostAssignment,
  type SignedAssignment,
  type TrustedKeys,
} from "@netfleet/shared";
import { EMPTY_PASS, type PassResult } from "./pass-result.ts";

/** A check's pass: what would change, and per resource id the fields that would. */
export type CheckResult = PassResult & { changes?: Record<string, string[]> };

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
    results: pass.results.map((r) => {
      const changes = pass.changes?.[r.id];
      return changes?.length ? { ...r, changes: changes.slice(0, 200) } : r;
    }),
    at: new Date().toISOString(),
  };
}
