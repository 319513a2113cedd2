import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { signManifest, signRecord, signTarget, type AgentRunning, type AgentTarget, type BundleManifest, type SigningKeys } from "@netfleet/shared";
import type { AgentUpgradeStore } from "../store/objects.ts";
import { withRetry } from "../store/kv.ts";
import type { RolloutEvent, RolloutResult } from "./events.ts";
import { RolloutAbort, runWaves } from "./run.ts";
import { LockHeldError, LockLostError, type RolloutLease, type RolloutLock } from "./state.ts";
import { STORE_RETRY_MS } from "./stores.ts";
import { orderTargets, planWaves, resolveAmount, type Amount } from "./waves.ts";

/** How an agent rollout runs; times in milliseconds. */
export interface AgentRolloutOptions {
  /** Hosts per wave after the canary (default 25%, at least 1). */
  batch?: Amount;
  /** Hosts that may fail before the rollout stops and reverts (default 0). A failed canary always stops it. */
  maxFail?: Amount;
  /** Hosts upgraded at once within a wave (default: the whole wave). */
  parallel?: number;
  /** How long a host has to report the new version, or a failure (default 180 s). */
  hostTimeoutMs?: number;
  /** How long the new version has on the host to come up and report before its supervisor puts the previous one back (seconds, default 120). */
  trialS?: number;
  /** Who holds the lock (default host:pid). */
  owner?: string;
  /** How often the lock is renewed (default 3 s). */
  lockRenewMs?: number;
}

/** What an agent rollout needs: the site's upgrade store, its rollout lock (shared with assignment rollouts), and the signing key. */
export interface AgentRolloutStores {
  site: string;
  upgrades: AgentUpgradeStore;
  lock: Pick<RolloutLock, "acquire" | "renew" | "release">;
  signing: SigningKeys;
}

/** A host to upgrade. */
export interface AgentRolloutHost {
  host: string;
  role: string;
}

/** The bundle to roll out: its bytes and the version it says it is. */
export interface AgentBundleInput {
  code: Uint8Array;
  version: string;
}

/** What an agent rollout reports as it goes (rendered like an assignment rollout's; see events.ts for the shared kinds). */
export type AgentRolloutEvent = RolloutEvent;

/** How the agent rollout ended, and each host's last report. */
export interface AgentRolloutOutcome {
  result: RolloutResult;
  manifest: BundleManifest;
  reports: Map<string, AgentRunning | undefined>;
}

/**
 * `netfleet rollout SITE --agent-bundle FILE`: stores the bundle in the
 * site's object store with its signed manifest, then, with the same wave
 * engine as assignments (runWaves: a canary, then waves of `batch`; a failed
 * canary, or more than `maxFail` failed hosts, stops it), writes each host's
 * signed target and waits for its agent to report the new version
 * ("running" with the manifest's sha256) or a failure for that target
 * ("refused", "reverted", "failed", "unsupported"), else times out. On a
 * stop, every host this rollout touched goes back to its earlier target (the
 * controller's own signed manifest, in a new target; the agent takes the
 * bundle from its kept P.prev when it matches) and is waited for; a host
 * that had no earlier target (its bundle came from bootstrap) has its target
 * withdrawn: it is back when it never left its bundle (refused, or put back
 * by its supervisor), else it stays (reported, not reverted). The
 * controller never signs values a host reported.
 * Holds the site's rollout lock throughout (LockHeldError when an
 * assignment or agent rollout runs). No state is kept for --resume: a
 * rollout cut short leaves each host's target where it was; running it
 * again continues (hosts already on the version are unchanged).
 */
export async function runAgentRollout(stores: AgentRolloutStores, hosts: readonly AgentRolloutHost[], bundle: AgentBundleInput, options: AgentRolloutOptions, emit: (e: AgentRolloutEvent) => void): Promise<AgentRolloutOutcome> {
  const started = Date.now();
  const hostTimeoutMs = options.hostTimeoutMs ?? 180_000;
  const trialS = options.trialS ?? 120;
  const rolloutId = `agent-${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}-${randomBytes(3).toString("hex")}`;
  const owner = `${options.owner ?? `${hostname()}:${process.pid}`}:${rolloutId}`;
  let lease: RolloutLease = await withRetry(() => stores.lock.acquire(owner, rolloutId), STORE_RETRY_MS);
  const abort = new RolloutAbort();
  // One renewal at a time (a second one on the same lease revision would conflict with the first and look like a takeover).
  let renewing = false;
  const renew = setInterval(() => {
    if (renewing) return;
    renewing = true;
    void stores.lock
      .renew(lease)
      .then(
        (l) => (lease = l),
        (err: unknown) => {
          if (err instanceof LockLostError) {
            abort.lockLost ??= err.message;
            emit({ event: "lock-lost", error: err.message });
          }
        },
      )
      .finally(() => (renewing = false));
  }, options.lockRenewMs ?? 3000);
  const reports = new Map<string, AgentRunning | undefined>();
  try {
    const manifest = signManifest(stores.site, bundle.code, bundle.version, stores.signing.privateKeyPem);
    await withRetry(() => stores.upgrades.putBundle(bundle.code, manifest), STORE_RETRY_MS);
    emit({ event: "agent-bundle", version: manifest.version, sha256: manifest.sha256, size: manifest.size, object: manifest.object });

    // What each host runs now: on the target bundle already = unchanged.
    const before = new Map<string, AgentRunning | undefined>();
    const todo: AgentRolloutHost[] = [];
    const unchanged: string[] = [];
    for (const h of orderTargets(hosts)) {
      const r = await withRetry(() => stores.upgrades.running(h.host), STORE_RETRY_MS);
      before.set(h.host, r);
      const same = r?.sha256 === manifest.sha256 && r.state === "running";
      emit({ event: "agent-diff", host: h.host, role: h.role, from: r ? r.version : null, to: manifest.version, status: same ? "unchanged" : "upgrade" });
      if (same) unchanged.push(h.host);
      else todo.push(h);
    }
    const waves = planWaves(todo, resolveAmount(options.batch ?? { percent: 25 }, todo.length, 1));
    const maxFail = resolveAmount(options.maxFail ?? { count: 0 }, todo.length, 0);
    emit({ event: "rollout", rolloutId, site: stores.site, check: false, resume: false, waves, maxFail, unchanged });

    const ok: string[] = [];
    const failed: string[] = [];
    const reasons: Record<string, string> = {};
    const touched: string[] = [];
    const earlier = new Map<string, AgentTarget | undefined>();
    const upgradeHost = async (host: string): Promise<boolean> => {
      const t0 = Date.now();
      const target = signTarget(host, manifest, trialS, stores.signing.privateKeyPem);
      // The target in force before this one (the controller's own signed record): what a revert goes back to.
      earlier.set(host, await withRetry(() => stores.upgrades.target(host), STORE_RETRY_MS));
      touched.push(host);
      await withRetry(() => stores.upgrades.setTarget(target), STORE_RETRY_MS);
      emit({ event: "host-start", host, agent: manifest.version });
      const { report, timedOut } = await stores.upgrades.waitRunning(
        host,
        (r) => (r.sha256 === manifest.sha256 && r.state === "running") || (r.target?.revision === target.revision && ["refused", "reverted", "failed", "unsupported"].includes(r.state)),
        hostTimeoutMs,
      );
      reports.set(host, report);
      const good = !timedOut && report?.sha256 === manifest.sha256 && report.state === "running";
      if (good) ok.push(host);
      else failed.push(host);
      const error = good ? undefined : timedOut ? `did not report version ${manifest.version} within ${Math.round(hostTimeoutMs / 1000)}s${report ? ` (last: ${report.version} ${report.state})` : ""}` : `${report!.state}: ${report!.reason ?? "no reason given"}`;
      if (error) reasons[host] = error;
      emit({ event: "host-done", host, ok: good, ms: Date.now() - t0, ...(error ? { error } : {}) });
      return !good;
    };
    const stoppedAt = await runWaves({ waves, maxFail, parallel: options.parallel, abort, emit, host: upgradeHost, failed: () => failed });

    const reverted: string[] = [];
    if (stoppedAt !== undefined) {
      emit({ event: "revert-start", hosts: touched });
      for (const host of touched) {
        const prev = earlier.get(host);
        const now = before.get(host);
        if (!prev || prev.manifest.sha256 === manifest.sha256) {
          // No earlier target (its bundle came from bootstrap): the controller signs nothing a host reported. The target is
          // withdrawn; a host that never left its bundle (refused, or put back by its supervisor) is back, others stay.
          await withRetry(() => stores.upgrades.clearTarget(host), STORE_RETRY_MS);
          const r = await withRetry(() => stores.upgrades.running(host), STORE_RETRY_MS);
          reports.set(host, r);
          const back = now?.sha256 != null && r?.sha256 === now.sha256;
          if (back) reverted.push(host);
          emit({ event: "host-reverted", host, ok: back, ...(back ? {} : { error: `no earlier target to go back to (its bundle came from bootstrap); it runs ${r?.version ?? "?"}` }) });
          continue;
        }
        // The earlier target's manifest, as the controller signed it then (never values a host reported), in a new target.
        // Signed by a key since rotated away (perhaps retired): the same fields, from the controller's own record, signed anew.
        const { signature: _s, keyId: _k, ...fields } = prev.manifest;
        const backManifest = prev.manifest.keyId === stores.signing.keyId ? prev.manifest : signRecord({ ...fields, signedAt: new Date().toISOString() }, stores.signing.privateKeyPem);
        await withRetry(() => stores.upgrades.setTarget(signTarget(host, backManifest, trialS, stores.signing.privateKeyPem)), STORE_RETRY_MS);
        const { report, timedOut } = await stores.upgrades.waitRunning(host, (r) => r.sha256 === prev.manifest.sha256 && r.state !== "upgrading", hostTimeoutMs);
        reports.set(host, report);
        if (!timedOut) reverted.push(host);
        emit({ event: "host-reverted", host, ok: !timedOut, ...(timedOut ? { error: `did not report version ${prev.manifest.version} within ${Math.round(hostTimeoutMs / 1000)}s` } : {}) });
      }
    }
    const result: RolloutResult = stoppedAt !== undefined ? "failed" : failed.length ? "partial" : "success";
    const skipped = todo.map((h) => h.host).filter((h) => !touched.includes(h));
    emit({ event: "done", result, ok: ok.filter((h) => !reverted.includes(h)), failed, reasons, reverted, skipped, unchanged, ms: Date.now() - started });
    return { result, manifest, reports };
  } finally {
    clearInterval(renew);
    if (!abort.lockLost) await withRetry(() => stores.lock.release(lease), STORE_RETRY_MS).catch(() => {});
  }
}

export { LockHeldError };
