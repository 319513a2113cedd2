import type { CheckReply, HostAssignment } from "@netfleet/shared";
import type { RolloutEvent } from "./events.ts";
import type { RolloutStores } from "./stores.ts";
import { runWaves, type RolloutAbort } from "./run.ts";

/** What check mode works with: the agents' check RPC, each host's target assignment, and the plan. */
export interface CheckRun {
  stores: Pick<RolloutStores, "check">;
  targets: ReadonlyMap<string, { assignment: HostAssignment }>;
  waves: readonly (readonly string[])[];
  /** Failed hosts allowed before the check stops; a failed canary stops it whatever the budget. */
  maxFail: number;
  /** Hosts checked at once within a wave (default: the whole wave). */
  parallel: number | undefined;
  abort: RolloutAbort;
  emit: (e: RolloutEvent) => void;
  /** How long an agent has to answer, in milliseconds. */
  applyTimeoutMs: number;
  /** For a plan file: a reply without the agent's observed-state hash fails the host (nothing to plan against). */
  requireObserved?: boolean;
  /** Hears each good reply (the plan file is made of them). */
  onReply?: (host: string, reply: CheckReply) => void;
}

/** The observed-state hash a check reply carries (protocol 1.2; older agents send none). */
export function observedOf(reply: CheckReply): string | undefined {
  return reply.observed;
}

/**
 * The waves in check mode: each host's agent asked what it would change to reach its target
 * (nothing is published). A host fails when its agent does not answer, refuses, or reports failed
 * resources. Returns the hosts that passed and failed, and whether the budget stopped the run.
 */
export async function checkWaves(run: CheckRun): Promise<{ ok: string[]; failed: string[]; reasons: Record<string, string>; stopped: boolean }> {
  const ok: string[] = [];
  const failed: string[] = [];
  const reasons: Record<string, string> = {};
  const stoppedAt = await runWaves({
    waves: run.waves,
    maxFail: run.maxFail,
    parallel: run.parallel,
    abort: run.abort,
    emit: run.emit,
    host: async (host) => {
      const problem = await checkHost(run, host);
      (problem === undefined ? ok : failed).push(host);
      if (problem !== undefined) reasons[host] = problem;
      return problem !== undefined;
    },
    failed: () => [...failed],
  });
  return { ok, failed, reasons, stopped: stoppedAt !== undefined };
}

/** Asks one host's agent what it would change, emitting its events; undefined when it answered without failures, else why not. */
async function checkHost(run: CheckRun, host: string): Promise<string | undefined> {
  const started = Date.now();
  run.emit({ event: "host-start", host });
  try {
    const reply = await run.stores.check(run.targets.get(host)!.assignment, run.applyTimeoutMs);
    const failures = reply.results.filter((r) => r.result === false).map((r) => ({ id: r.id, ...(r.comment ? { comment: r.comment } : {}) }));
    const wouldChange = reply.results
      .filter((r) => r.result === null)
      .map((r) => ({ id: r.id, fields: r.changes ?? [], ...(r.fields?.length ? { values: r.fields } : {}), ...(r.diff ? { diff: r.diff } : {}) }));
    const unplannable = run.requireObserved && reply.ok && !observedOf(reply) ? "the agent sent no observed-state hash (older than protocol 1.2): no plan can be made against it" : undefined;
    const good = reply.ok && failures.length === 0 && !unplannable;
    const error = reply.error ?? unplannable;
    run.emit({ event: "host-done", host, ok: good, summary: reply.summary, failures, wouldChange, ...(error ? { error } : {}), ms: Date.now() - started });
    if (good) run.onReply?.(host, reply);
    if (good) return undefined;
    return error ?? `${failures.length} resource(s) failed: ${failures.slice(0, 5).map((f) => f.id).join(", ")}${failures.length > 5 ? ", ..." : ""}`;
  } catch (err) {
    const msg = /no responders|503/i.test((err as Error).message) ? "agent not connected (no answer to the check request)" : (err as Error).message;
    run.emit({ event: "host-done", host, ok: false, error: msg, ms: Date.now() - started });
    return msg;
  }
}
