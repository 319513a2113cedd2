import type { HostAssignment, Report } from "@netfleet/shared";
import { StaleRevisionError } from "../store/desired.ts";
import { withRetry } from "../store/kv.ts";
import type { HostRecord } from "../store/registry.ts";
import { verdict } from "./diff.ts";
import { STORE_RETRY_MS, type RolloutStores } from "./stores.ts";
import type { RevertRun } from "./revert.ts";
import { runWaves } from "./run.ts";
import { LockLostError } from "./state.ts";

/** What apply mode works with: as a revert, plus the registry and each host's target assignment. */
export interface ApplyRun extends Omit<RevertRun, "stores"> {
  stores: Pick<RolloutStores, "registry" | "publish" | "waitForConfirmed">;
  targets: ReadonlyMap<string, { assignment: HostAssignment; plan?: { observed: string } }>;
}

/** The agent's refusal of a plan envelope (engine expectObserved): the comment of its failed result says so. */
const PLAN_REFUSED = /host changed since the plan/;

/**
 * The waves in apply mode: each due host (pending, or applying when resumed) published and judged
 * on its verified report. Over the budget (or a failed canary) the state goes to `reverting`, with
 * a note saying why. Throws only what aborts the rollout (see RolloutAbort).
 */
export async function applyWaves(run: ApplyRun): Promise<void> {
  const { progress } = run;
  const maxFail = progress.state.maxFail ?? 0;
  // Hosts approved when the waves start, read in one pass (a host not among them is read on its own).
  // Only their names are kept: the records (with each host's facts) were ~1 KB a host on the heap for the whole rollout.
  // The pass (some 0.5 s of the controller's CPU at 10,000 hosts: every record decoded) runs while a small canary is
  // published and judged: the canary's hosts are read on their own, and the later waves wait for the pass.
  const pass = approvedHosts(run.stores.registry);
  const canary = new Set((progress.state.waves[0]?.length ?? 0) <= CANARY_READ_ALONE_MAX ? progress.state.waves[0] : []);
  let stoppedAt: number | undefined;
  try {
    stoppedAt = await runWaves({
      waves: progress.state.waves,
      maxFail,
      parallel: run.parallel,
      abort: run.abort,
      emit: run.emit,
      due: (host) => ["pending", "applying"].includes(progress.host(host).status),
      host: async (host) => {
        await applyHost(run, canary.has(host) ? READ_ALONE : await pass, host);
        return progress.host(host).status === "failed";
      },
      failed: () => progress.hosts("failed"),
    });
  } finally {
    // Never left running (it never rejects): a canary that stopped the rollout does not leave the pass's reads and retries behind.
    await pass;
  }
  if (stoppedAt === undefined) return;
  const failed = progress.hosts("failed");
  progress.state.phase = "reverting";
  progress.state.note = stoppedAt === 0 ? `canary ${failed.join(", ")} failed` : `${failed.length} hosts failed, budget ${maxFail}`;
  await progress.save();
}

/**
 * A canary of at most this many hosts does not wait for the pass over the registry: each of its hosts is read on its
 * own (one KV get), while the pass runs. A larger canary waits for the pass, as the later waves do.
 */
const CANARY_READ_ALONE_MAX = 16;

/** No host taken as approved beforehand: each is read on its own (applyHost). */
const READ_ALONE: ReadonlySet<string> = new Set();

/** The names of the approved hosts, from one pass over the registry (empty when it cannot be read: each host is then read on its own). */
async function approvedHosts(registry: ApplyRun["stores"]["registry"]): Promise<Set<string>> {
  const records = await withRetry(() => registry.list(), STORE_RETRY_MS).catch(() => [] as HostRecord[]);
  return new Set(records.filter((r) => r.state === "approved").map((r) => r.host));
}

/**
 * Publishes a pending host's assignment (compare-and-set), waits for its report and judges it: a failure
 * at once, a success once its agent confirmed it (else failed: UnconfirmedError's reason).
 */
async function applyHost(run: ApplyRun, approved: ReadonlySet<string>, host: string): Promise<void> {
  const { progress, stores, abort } = run;
  const started = Date.now();
  const p = progress.host(host);
  const target = run.targets.get(host)!;
  // A success counts once the agent confirmed it (AppliedView.wait): the stored report alone may be undone by its lockout protection.
  const wait = () => stores.waitForConfirmed(host, p.revision!, run.applyTimeoutMs, { hash: target.assignment.hash, windowMs: run.confirmWindowMs });
  let reported: Promise<Report> | undefined;
  try {
    if (p.status === "pending") {
      // Approved at the start of the rollout (one pass over the registry), or read now.
      const record = approved.has(host) ? undefined : await withRetry(() => stores.registry.get(host), STORE_RETRY_MS);
      if (!approved.has(host) && record?.state !== "approved") throw new Error(record ? `not approved (${record.state}${record.reason ? `: ${record.reason}` : ""})` : "has not enrolled");
      let published;
      try {
        // A plan's envelope is always a new revision (force): the agent checks the plan's observation on that revision's first pass.
        // Over a plan's envelope (fresh), a rollout publishes its own revision: the agent may have refused that one.
        published = await stores.publish(target.assignment, {
          basedOn: p.basedOn,
          // What the diff read at basedOn: the publish writes on it without reading the key again.
          known: p.previous,
          ...(target.plan ? { force: true, plan: { observed: target.plan.observed } } : p.fresh ? { force: true } : {}),
        });
      } catch (err) {
        if (err instanceof StaleRevisionError) throw new Error(`desired state changed since the ${target.plan ? "plan" : "diff"} (someone else published); ${target.plan ? "make a new plan" : "rerun the rollout"}`);
        throw err;
      }
      p.status = "applying";
      p.revision = published.revision;
      // Waiting from the publish on, not after the state write (which may wait for others): the agent's
      // confirmation on the report subject is heard only by a host already waiting or already holding its report.
      reported = wait();
      reported.catch(() => {});
      await progress.save(host);
    }
    run.emit({ event: "host-start", host, ...(p.revision ? { revision: p.revision } : {}) });
    const report = await (reported ?? wait());
    const failures = report.results.filter((r) => r.result === false).map((r) => ({ id: r.id, ...(r.comment ? { comment: r.comment } : {}) }));
    const refusal = report.revision === p.revision ? failures.find((f) => PLAN_REFUSED.test(f.comment ?? "")) : undefined;
    const problem = refusal ? `refused by the agent: ${refusal.comment}` : verdict(report, p.revision!, target.assignment.hash);
    p.status = problem ? "failed" : "ok";
    if (problem) p.error = problem;
    await progress.save(host);
    run.emit({ event: "host-done", host, ok: !problem, revision: p.revision!, summary: report.summary, failures, ...(problem ? { error: problem } : {}), ms: Date.now() - started });
  } catch (err) {
    if (err instanceof LockLostError || err === abort.fatal) throw err;
    p.status = "failed";
    p.error = (err as Error).message;
    await progress.save(host).catch(() => {});
    if (abort.fatal) throw abort.fatal;
    run.emit({ event: "host-done", host, ok: false, ...(p.revision ? { revision: p.revision } : {}), error: p.error, ms: Date.now() - started });
  }
}
