import { readFileSync, statSync } from "node:fs";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import PQueue from "p-queue";
import { putKey, readKey } from "./kv.ts";
import { fetchBundle, verifyBundle } from "./upgrade-fetch.ts";
import { fileSha256, readMarker, upgradePaths, writeFileAtomic, writeMarker, type UpgradePaths } from "./upgrade-files.ts";
import { UpgradeRefusedError, agentBucket, encodeRunning, runKey, targetKeyIds, verifyTarget, wantKey, type AgentRunning, type AgentTarget, type TrustedKeys } from "@netfleet/shared";

/** How the upgrader finds its way. */
export interface AgentUpgraderOptions {
  site: string;
  /** The inventory host name once enrolled (undefined before). */
  host: () => string | undefined;
  /**
   * The controller keys the agent trusts, as for assignments (fleet/desired.ts
   * SigningTrust: the pinned key and those learned from the signed chain);
   * `refresh` reads the chain. Undefined before enrollment.
   */
  trust: () => { keys(): Promise<TrustedKeys>; refresh(nc: NatsConnection): Promise<TrustedKeys> } | undefined;
  /** The version this process runs (AGENT_VERSION). */
  version: string;
  /** The bundle file this process runs; undefined when not run from a bundle (then upgrades are "unsupported"). */
  bundlePath: string | undefined;
  /** Started by the upgrade supervisor (`agent.mjs supervise`), which swaps bundles and reverts: without it, upgrades are "unsupported". */
  supervised: boolean;
  /** Stops this process cleanly so the supervisor starts the staged bundle (default: SIGTERM to itself, the stop systemd sends). */
  restart?: () => void;
  /** The target is read again this often without a hint (ms, default 60 s; the first time at a random offset). */
  resyncMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

/**
 * The agent's side of `netfleet rollout --agent-bundle`. On each connection
 * it says what it runs (`run.<host>` of KV `nf_<site>_agent`, AgentRunning),
 * then follows its target (`want.<host>`, a core subscription as the hint,
 * a direct get to read) and, when the target names a bundle other than the
 * one it runs:
 *   1. verifies the target's and the manifest's signatures (trusted key),
 *      site and host (shared protocol/agent-upgrade.ts verifyTarget);
 *   2. fetches the bundle from the object store by direct gets (upgrade-fetch.ts),
 *      checking size and sha256 against the signed manifest BEFORE writing anything;
 *   3. writes it as P.next (0644, exclusive temp, fsync, rename) and the
 *      marker "staged" (upgrade-files.ts), reports "upgrading", and stops
 *      itself; the supervisor (upgrade-supervisor.ts) keeps P as P.prev,
 *      moves P.next to P and starts it.
 * The new version, started on trial, commits by reporting "running" with
 * its version and then marking the upgrade "committed"; the supervisor
 * puts P.prev back if it exits or has not committed within the target's
 * `trialS`, and the old version then reports "reverted" with the reason,
 * and does not try that bundle again. A refused target is reported as
 * "refused" (reason: UpgradeRefusal) and logged `upgrade-refused`;
 * nothing is written to disk. Errors never escape (they are logged).
 */
export class AgentUpgrader {
  private readonly o: AgentUpgraderOptions;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly paths: UpgradePaths | undefined;
  private readonly queue = new PQueue({ concurrency: 1 });
  private nc: NatsConnection | undefined;
  private sub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ownSha: string | null;
  private started = false;
  private stopped = false;
  private staged = false;
  /** The last target revision judged, so a refused one is not fetched and reported again on every resync. */
  private judged = 0;
  /** The state last reported. */
  private lastState: AgentRunning["state"] | undefined;

  constructor(options: AgentUpgraderOptions) {
    this.o = options;
    this.log = options.log ?? (() => {});
    this.paths = options.bundlePath ? upgradePaths(options.bundlePath) : undefined;
    this.ownSha = options.bundlePath ? (fileSha256(options.bundlePath) ?? null) : null;
  }

  /** Binds to the agent's connection (`fresh`: a new connection object, so subscribe again); reports and checks the target. */
  attach(nc: NatsConnection, fresh: boolean): void {
    if (this.stopped) return;
    this.nc = nc;
    const host = this.o.host();
    if (!host) return;
    if (fresh || !this.sub) {
      this.sub = nc.subscribe(`$KV.${agentBucket(this.o.site)}.${wantKey(host)}`);
      void (async () => {
        for await (const _ of this.sub!) this.check();
      })().catch(() => {});
    }
    if (!this.timer) {
      const every = this.o.resyncMs ?? 60_000;
      const first = setTimeout(() => {
        this.check();
        this.timer = setInterval(() => this.check(), every);
      }, Math.round(Math.random() * every));
      this.timer = first;
    }
    // A reconnect says it again (the report may have been lost with the connection).
    if (!fresh) this.started = false;
    this.check();
  }

  /** Stops following the target. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.timer);
    this.sub?.unsubscribe();
    this.queue.clear();
    await this.queue.onIdle();
  }

  /** Reads and judges the target (queued: one at a time). */
  check(): void {
    if (this.stopped || this.staged) return;
    // A report that did not get through (NATS away, permissions not yet reloaded) is tried again with each check.
    if (!this.started) void this.queue.add(() => this.announce()).catch((err: unknown) => this.log({ event: "upgrade-error", error: (err as Error).message }));
    void this.queue.add(() => this.judge()).catch((err: unknown) => this.log({ event: "upgrade-error", error: (err as Error).message }));
  }

  /**
   * Says what runs, once per process and again on each reconnect: "running";
   * on trial after an upgrade, "running" and then the marker "committed"
   * (the supervisor stops its trial clock); after a revert, "reverted" with
   * the marker's reason.
   */
  private async announce(): Promise<void> {
    const marker = this.paths ? readMarker(this.paths) : undefined;
    if (marker?.state === "trying" && marker.to.sha256 === this.ownSha) {
      await this.report({ state: "running", target: marker.to });
      await writeMarker(this.paths!, { ...marker, state: "committed" });
      this.log({ event: "upgrade-committed", version: this.o.version, sha256: this.ownSha, from: marker.from.version });
      this.started = true;
      return;
    }
    if (marker?.state === "reverted" && marker.from.sha256 === this.ownSha) {
      await this.report({ state: "reverted", target: marker.to, reason: marker.reason ?? "reverted" });
      if (!this.started) this.log({ event: "upgrade-reverted", version: this.o.version, failed: marker.to.version, reason: marker.reason });
      this.started = true;
      return;
    }
    await this.report({ state: this.o.supervised && this.paths ? "running" : "unsupported", ...(this.o.supervised && this.paths ? {} : { reason: "not started by the upgrade supervisor of a bundle (agent.mjs supervise FILE)" }) });
    this.started = true;
  }

  private async judge(): Promise<void> {
    const nc = this.nc;
    const host = this.o.host();
    if (!nc || !host || this.stopped || this.staged) return;
    const stored = await readKey(nc, agentBucket(this.o.site), wantKey(host));
    if (!stored || stored.operation !== "PUT") return;
    const trust = this.o.trust();
    if (!trust) return;
    // Signed by a key other than the active one (a rotation not followed yet, or a retired key): the chain is read first.
    let keys = await trust.keys();
    if (targetKeyIds(stored.data).some((id) => id !== keys.active.keyId)) keys = await trust.refresh(nc);
    let target: AgentTarget;
    try {
      target = verifyTarget(stored.data, keys, { site: this.o.site, host });
    } catch (err) {
      if (!(err instanceof UpgradeRefusedError)) throw err;
      if (stored.seq === this.judged) return;
      this.judged = stored.seq;
      return this.refuse(err, undefined);
    }
    const manifest = target.manifest;
    const to = { version: manifest.version, sha256: manifest.sha256, revision: target.revision };
    if (manifest.sha256 === this.ownSha) {
      // Already runs it (or was set back to it after a refusal or a revert): say so once.
      if (this.lastState !== "running") await this.report({ state: "running", target: to });
      return;
    }
    const marker = this.paths ? readMarker(this.paths) : undefined;
    // A bundle that was put back is not tried again; the controller moves the target on (or back).
    if (marker?.state === "reverted" && marker.to.sha256 === manifest.sha256) return;
    if (stored.seq === this.judged) return;
    this.judged = stored.seq;
    if (!this.o.supervised || !this.paths || this.ownSha === null) {
      await this.report({ state: "unsupported", target: to, reason: "not started by the upgrade supervisor of a bundle (agent.mjs supervise FILE)" });
      return;
    }
    this.log({ event: "upgrade-fetch", version: manifest.version, sha256: manifest.sha256, size: manifest.size, object: manifest.object });
    let code: Uint8Array;
    try {
      // Back to the bundle kept from before the last upgrade (a revert): it is on disk, checked like a fetched one.
      const local = fileSha256(this.paths.prev) === manifest.sha256;
      code = local ? readFileSync(this.paths.prev) : await fetchWithRetry(nc, this.o.site, manifest);
      if (local) this.log({ event: "upgrade-local", path: this.paths.prev, version: manifest.version });
      verifyBundle(code, manifest);
    } catch (err) {
      if (err instanceof UpgradeRefusedError) return this.refuse(err, to);
      this.judged = 0;
      this.log({ event: "upgrade-failed", version: manifest.version, error: (err as Error).message });
      await this.report({ state: "failed", target: to, reason: `fetch: ${(err as Error).message}` });
      return;
    }
    // Verified: only now is anything written.
    writeFileAtomic(this.paths.next, code, 0o644);
    await writeMarker(this.paths, { state: "staged", from: { version: this.o.version, sha256: this.ownSha }, to, trialS: target.trialS });
    await this.report({ state: "upgrading", target: to });
    this.staged = true;
    this.log({ event: "upgrade-staged", from: this.o.version, to: manifest.version, sha256: manifest.sha256, path: this.paths.next });
    (this.o.restart ?? (() => process.kill(process.pid, "SIGTERM")))();
  }

  private async refuse(err: UpgradeRefusedError, to: AgentRunning["target"] | undefined): Promise<void> {
    this.log({ event: "upgrade-refused", reason: err.reason, error: err.message, ...(to ? { version: to.version, sha256: to.sha256 } : {}) });
    await this.report({ state: "refused", ...(to ? { target: to } : {}), reason: `${err.reason}: ${err.message}` });
  }

  /** Writes `run.<host>` (the stream acknowledges). */
  private async report(r: Pick<AgentRunning, "state"> & Partial<Pick<AgentRunning, "target" | "reason">>): Promise<void> {
    const nc = this.nc;
    const host = this.o.host();
    if (!nc || !host) return;
    const size = this.o.bundlePath && this.ownSha ? statSync(this.o.bundlePath, { throwIfNoEntry: false })?.size : undefined;
    const data = encodeRunning({ site: this.o.site, host, version: this.o.version, sha256: this.ownSha, ...(size ? { size } : {}), ...r });
    await putKey(nc, agentBucket(this.o.site), runKey(host), data);
    this.lastState = r.state;
  }
}

/**
 * fetchBundle, read again (10 times, 200 ms apart) while the object is
 * "missing": a direct get may be answered by a replica that does not have
 * the write yet (NATS docs, "Reading messages directly": direct gets are
 * served by any replica).
 */
async function fetchWithRetry(nc: NatsConnection, site: string, manifest: Parameters<typeof fetchBundle>[2]): Promise<Uint8Array> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetchBundle(nc, site, manifest);
    } catch (err) {
      if (!(err instanceof UpgradeRefusedError) || err.reason !== "missing" || attempt >= 9) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** The last `run.<host>` record as stored (for tests and tools reading with an agent's connection). */
export async function readRunning(nc: NatsConnection, site: string, host: string): Promise<Uint8Array | undefined> {
  return (await readKey(nc, agentBucket(site), runKey(host)))?.data;
}
