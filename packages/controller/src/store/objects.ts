import { createHash } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { AgentTarget, agentBucket, bundleBucket, decodeRunning, runKey, wantKey, type AgentRunning, type BundleManifest } from "@netfleet/shared";
import { liveValue, snapshot, withRetry } from "./kv.ts";

/**
 * The bundle store's size cap (bytes): nats-server reserves a stream's
 * max_bytes against its max_file_store at creation, so it stays small; a
 * bundle is about 2 MB, and the oldest bundles no target names are removed
 * when a new one is stored (keepBundles).
 */
export const BUNDLE_STORE_MAX_BYTES = 128 * 1024 * 1024;

/** Hosts a site is sized for (as store/buckets.ts): the agent bucket holds two keys per host. */
const FLEET_CAPACITY_HOSTS = 10_000;

/** Bundles kept in the store besides those a target names. */
const KEEP_UNUSED_BUNDLES = 3;

/** The metadata key of the signed manifest on a stored bundle. */
export const MANIFEST_METADATA_KEY = "netfleet-manifest";

/**
 * The controller's side of agent upgrades: the site's bundle object store
 * (`nf_<site>_bundles`, nats.js @nats-io/obj, NATS ADR-20; its stream has
 * allow_direct, which agents read by) and the KV bucket `nf_<site>_agent`
 * (`want.<host>` the signed targets it writes, `run.<host>` what each
 * agent reports). Both are made on first use (`open`), not by serve: a
 * site that never upgrades agents has neither. The agent bucket refuses
 * rollups (each agent writes its own key) and is bounded by count (two keys
 * per host) and value size. Wire: @netfleet/shared protocol/agent-upgrade.ts.
 */
export class AgentUpgradeStore {
  readonly site: string;
  private readonly kv: KV;
  private readonly os: ObjectStore;

  private constructor(site: string, kv: KV, os: ObjectStore) {
    this.site = site;
    this.kv = kv;
    this.os = os;
  }

  /**
   * Creates (or opens) both stores with `replicas` replicas.
   * @throws when JetStream refuses either within `retryMs` (e.g. no room for the bundle store's max_bytes).
   */
  static async open(nc: NatsConnection, site: string, o: { replicas: number; retryMs?: number }): Promise<AgentUpgradeStore> {
    const retryMs = o.retryMs ?? 30_000;
    // Loaded here, not at import: control-plane.ts imports this file for status, which needs no object store.
    const { Objm } = await import("@nats-io/obj");
    const kv = await withRetry(
      () => new Kvm(nc).create(agentBucket(site), { history: 1, replicas: o.replicas, allow_direct: true, maxValueSize: 16 * 1024, max_bytes: -1 }),
      retryMs,
    );
    const jsm = await jetstreamManager(nc);
    const stream = `KV_${agentBucket(site)}`;
    const info = await jsm.streams.info(stream);
    const want = { max_msgs: 4 * FLEET_CAPACITY_HOSTS, allow_rollup_hdrs: false };
    if (info.config.max_msgs !== want.max_msgs || info.config.allow_rollup_hdrs !== false) await jsm.streams.update(stream, { ...info.config, ...want });
    const os = await withRetry(
      () => new Objm(jetstream(nc)).create(bundleBucket(site), { replicas: o.replicas, max_bytes: BUNDLE_STORE_MAX_BYTES, description: `netfleet agent bundles of site ${site}` }),
      retryMs,
    );
    return new AgentUpgradeStore(site, kv, os);
  }

  /**
   * Stores `code` under the manifest's object name, the signed manifest in
   * its metadata; an object already stored with the same digest (SHA-256 of
   * its bytes, ADR-20) and the same manifest is kept as it is. Then removes
   * old bundles no target names (keepBundles).
   */
  async putBundle(code: Uint8Array, manifest: BundleManifest): Promise<void> {
    const have = await this.os.info(manifest.object);
    // ADR-20's digest of what is stored: an object changed since (or a different manifest) is stored again.
    const digest = `SHA-256=${createHash("sha256").update(code).digest("base64url")}=`;
    if (!have || have.deleted || have.size !== code.length || have.digest !== digest || have.metadata?.[MANIFEST_METADATA_KEY] !== JSON.stringify(manifest)) {
      await this.os.putBlob({ name: manifest.object, description: `netfleet-agent ${manifest.version}`, metadata: { [MANIFEST_METADATA_KEY]: JSON.stringify(manifest) } }, code);
    }
    await this.keepBundles(manifest.object);
  }

  /** Removes stored bundles that no `want.<host>` names, keeping `keep` and the KEEP_UNUSED_BUNDLES newest others. */
  private async keepBundles(keep: string): Promise<void> {
    const named = new Set([keep, ...[...(await this.targets()).values()].map((t) => t.manifest.object)]);
    const unused = (await this.os.list()).filter((i) => !i.deleted && !named.has(i.name)).sort((a, b) => b.mtime.localeCompare(a.mtime));
    for (const old of unused.slice(KEEP_UNUSED_BUNDLES)) await this.os.delete(old.name);
  }

  /** Writes `host`'s target; returns the KV revision. */
  async setTarget(target: AgentTarget): Promise<number> {
    return this.kv.put(wantKey(target.host), JSON.stringify(target));
  }

  /** Withdraws `host`'s target (a delete marker): its agent keeps what it runs. */
  async clearTarget(host: string): Promise<void> {
    await this.kv.delete(wantKey(host));
  }

  /** `host`'s target as stored, if any (not verified: the controller wrote it). */
  async target(host: string): Promise<AgentTarget | undefined> {
    const e = liveValue(await this.kv.get(wantKey(host)));
    if (!e) return undefined;
    const parsed = AgentTarget.safeParse(JSON.parse(e.string()));
    return parsed.success ? parsed.data : undefined;
  }

  /** Every host's target. */
  async targets(): Promise<Map<string, AgentTarget>> {
    const out = new Map<string, AgentTarget>();
    for await (const key of await this.kv.keys("want.*")) {
      const t = await this.target(key.slice("want.".length));
      if (t) out.set(t.host, t);
    }
    return out;
  }

  /** What `host`'s agent last said it runs (undefined: never said, or not readable). */
  async running(host: string): Promise<AgentRunning | undefined> {
    const e = liveValue(await this.kv.get(runKey(host)));
    if (!e) return undefined;
    try {
      const r = decodeRunning(`kv ${agentBucket(this.site)}/${runKey(host)}`, e.value);
      return r.host === host && r.site === this.site ? r : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Polls `host`'s running report (every `pollMs`) until `done` says it is
   * final; resolves with it, or with the last one seen (undefined: none) when
   * `timeoutMs` passes.
   */
  async waitRunning(host: string, done: (r: AgentRunning) => boolean, timeoutMs: number, pollMs = 250): Promise<{ report: AgentRunning | undefined; timedOut: boolean }> {
    const deadline = Date.now() + timeoutMs;
    let last: AgentRunning | undefined;
    for (;;) {
      last = (await this.running(host).catch(() => undefined)) ?? last;
      if (last && done(last)) return { report: last, timedOut: false };
      if (Date.now() >= deadline) return { report: last, timedOut: true };
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** The object store (tests and tools). */
  get objects(): ObjectStore {
    return this.os;
  }
}

/**
 * What each host's agent says it runs, for `netfleet status` (StatusSources.agent):
 * reads `run.<host>` of KV `nf_<site>_agent` without creating the bucket
 * (opened once, on first use; a site without it gives undefined for every host).
 * Errors of a read give undefined for that host.
 */
export function agentVersionSource(nc: NatsConnection, site: string): (host: string) => Promise<AgentRunning | undefined> {
  let kv: Promise<KV | undefined> | undefined;
  return async (host) => {
    kv ??= new Kvm(nc).open(agentBucket(site)).then(
      (b) => b,
      () => undefined,
    );
    const bucket = await kv;
    if (!bucket) {
      kv = undefined;
      return undefined;
    }
    const e = liveValue(await bucket.get(runKey(host)).catch(() => null));
    if (!e) return undefined;
    try {
      const r = decodeRunning(`kv ${agentBucket(site)}/${runKey(host)}`, e.value);
      return r.host === host && r.site === site ? r : undefined;
    } catch {
      return undefined;
    }
  };
}

/**
 * What every host's agent says it runs, in one pass over KV `nf_<site>_agent`
 * (store/kv.ts snapshot; the bucket also holds the `want.<host>` targets):
 * `run.<host>` values that decode and name their own host and site, by host.
 * Empty when the site has no such bucket (never created here).
 * @throws when the bucket exists but cannot be read.
 */
export async function agentVersionsAll(nc: NatsConnection, site: string): Promise<Map<string, AgentRunning>> {
  const out = new Map<string, AgentRunning>();
  const bucket = await new Kvm(nc).open(agentBucket(site)).catch(() => undefined);
  if (!bucket) return out;
  for (const [key, e] of await snapshot(bucket)) {
    if (!key.startsWith("run.")) continue;
    const host = key.slice("run.".length);
    try {
      const r = decodeRunning(`kv ${agentBucket(site)}/${key}`, e.value);
      if (r.host === host && r.site === site && runKey(host) === key) out.set(host, r);
    } catch {
      // Not a report: the host shows none, as agentVersionSource does.
    }
  }
  return out;
}
