import type { Report } from "@netfleet/shared";
import { withRetry } from "../store/kv.ts";
import { verdict } from "./diff.ts";
import type { RolloutEvent } from "./events.ts";
import { STORE_RETRY_MS, type RolloutStores } from "./stores.ts";
import type { RolloutProgress } from "./progress.ts";
import { forEachHost, type RolloutAbort } from "./run.ts";
import { LockLostError } from "./state.ts";

/** What a revert works with: the stores, the rollout's progress, and how many hosts at once. */
export interface RevertRun {
  stores: Pick<RolloutStores, "desired" | "publish" | "waitForConfirmed">;
  progress: RolloutProgress;
  abort: RolloutAbort;
  emit: (e: RolloutEvent) => void;
  /** Hosts reverted at once (default: all). */
  parallel: number | undefined;
  /** How long a host has to report the previous assignment applied, in milliseconds. */
  applyTimeoutMs: number;
  /** How long a host's applied success waits for its agent's confirmation before it fails, in milliseconds (RolloutOptions.confirmWindowMs). */
  confirmWindowMs: number;
}

/**
 * Puts back the previous assignment of every host this rollout published to, and waits for each
 * to be verified applied (and confirmed by its agent, as in apply mode). A host that had none keeps the new one (`not-reverted`); a host that does
 * not come back is `revert-failed`. Throws only what aborts the rollout (see RolloutAbort).
 */
export async function revert(run: RevertRun): Promise<void> {
  const changed = Object.entries(run.progress.state.hosts!)
    .filter(([, h]) => h.revision !== undefined && ["ok", "failed", "applying", "reverting"].includes(h.status))
    .map(([n]) => n);
  run.emit({ event: "revert-start", hosts: changed });
  await forEachHost(changed, run.parallel, run.abort, (host) => revertHost(run, host));
}

async function revertHost(run: RevertRun, host: string): Promise<void> {
  const { progress, stores, abort } = run;
  const p = progress.host(host);
  try {
    if (!p.previous) {
      p.status = "not-reverted";
      p.error = "no previous assignment to go back to (first rollout to this host); it keeps the new one";
      await progress.save(host);
      run.emit({ event: "host-reverted", host, ok: false, error: p.error });
      return;
    }
    const wait = () => stores.waitForConfirmed(host, p.revertRevision!, run.applyTimeoutMs, { hash: p.previous!.hash, windowMs: run.confirmWindowMs });
    let reported: Promise<Report> | undefined;
    if (p.status !== "reverting" || p.revertRevision === undefined) {
      const previous = await withRetry(() => stores.desired.atRevision(host, p.previous!.revision), STORE_RETRY_MS);
      if (!previous) throw new Error(`revision ${p.previous.revision} is no longer in the desired history`);
      const published = await stores.publish(previous.assignment);
      p.status = "reverting";
      p.revertRevision = published.revision;
      // Waiting from the publish on (as apply mode does): the confirmation is heard only by a host waiting or holding its report.
      reported = wait();
      reported.catch(() => {});
      await progress.save(host);
    }
    const report = await (reported ?? wait());
    const problem = verdict(report, p.revertRevision!, p.previous.hash);
    p.status = problem ? "revert-failed" : "reverted";
    if (problem) p.error = `revert: ${problem}`;
    await progress.save(host);
    run.emit({ event: "host-reverted", host, ok: !problem, revision: p.revertRevision!, ...(problem ? { error: problem } : {}) });
  } catch (err) {
    if (err instanceof LockLostError || err === abort.fatal) throw err;
    p.status = "revert-failed";
    p.error = `revert: ${(err as Error).message}`;
    await progress.save(host).catch(() => {});
    if (abort.fatal) throw abort.fatal;
    // The event's reason as the verdict's (without the state's "revert: "): the renderer prints "NOT reverted: <reason>".
    run.emit({ event: "host-reverted", host, ok: false, error: (err as Error).message });
  }
}
