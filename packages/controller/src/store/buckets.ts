import { jetstreamManager, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  CORRECTIVE_MAX_VALUE_BYTES,
  ENROLL_FACTS_MAX_BYTES,
  LEASES_MAX_VALUE_BYTES,
  appliedBucket,
  claimsBucket,
  correctiveBucket,
  desiredBucket,
  hostsBucket,
  kvStream,
  leasesBucket,
  rolloutBucket,
  usedTokensBucket,
} from "@netfleet/shared";
import { ensureAuditStream } from "./audit.ts";
import { withRetry } from "./kv.ts";

/**
 * How many hosts the bucket limits are sized for. Every bound below is
 * computed from it and from the largest value a bucket takes.
 */
export const FLEET_CAPACITY_HOSTS = 10_000;

/**
 * The stock nats-server max_payload (1 MiB): no message, hence no KV value,
 * is bigger, so it is the value limit of buckets whose values have no smaller bound.
 */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

/** Largest registry record or pending claim, bytes: the largest facts (ENROLL_FACTS_MAX_BYTES) and 2 KiB of record fields. */
export const HOST_RECORD_MAX_BYTES = ENROLL_FACTS_MAX_BYTES + 2048;

/** Pending claims kept at most, per site; a claim over it is refused (and logged) until an operator approves or rejects some. */
export const CLAIMS_MAX = 256;

/** A pending claim nobody approved is dropped after this long (the claims bucket's max_age): 7 days, ms. */
export const CLAIMS_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** Used host-token nonces kept at most (one per approval by a host token within USED_TOKENS_MAX_AGE_MS). */
export const USED_TOKENS_MAX = 4 * FLEET_CAPACITY_HOSTS;

/** A used nonce is kept this long: past the longest host-token life (30 days), plus a day of clock skew, ms. */
export const USED_TOKENS_MAX_AGE_MS = 31 * 24 * 3600 * 1000;

/** Per-message overhead of a KV entry in the store (subject `$KV.<bucket>.<key>`, headers, index), bytes, rounded up. */
const ENTRY_OVERHEAD_BYTES = 256;

/**
 * The registry's buckets: approved (and rejected) host records, pending
 * claims kept apart from them, and the used host-token nonces. An
 * enrollment that is not approved only ever writes `claims`.
 */
export interface RegistryBuckets {
  /** `nf_<site>_hosts`: one record per inventory host an operator or a host token approved (or that was rejected/revoked). */
  records: KV;
  /** `nf_<site>_claims`: pending claims (site token), one per claimed name, at most CLAIMS_MAX. */
  claims: KV;
  /** `nf_<site>_tokens`: host-token nonces already used. */
  tokens: KV;
  /** Removes a claim without leaving a delete marker (a stream purge of its subject), so markers never count against CLAIMS_MAX. */
  jsm: JetStreamManager;
}

/** The site's KV buckets (`nf_<site>_<name>`). */
export interface Buckets {
  /** Signed assignments, one key per host (written by the controller). */
  desired: KV;
  /** The host registry: records, pending claims, used host tokens. */
  hosts: RegistryBuckets;
  /** Each agent's last applied report (written by that host's agent). */
  applied: KV;
  /** The rollout lock and sharded rollout state. */
  rollout: KV;
  /** DHCP leases, one key per backend (written by that backend's agent, read by every agent). */
  leases: KV;
  /** Corrective history, one key per host (written by that host's agent). */
  corrective: KV;
}

/** How the buckets are made. */
export interface BucketOptions {
  /** KV replicas: 1 for a single server, 3 for the cluster. */
  replicas: number;
  /** KV history per key of desired, applied and rollout (at least 5 is kept). */
  history: number;
  /** How long creation retries while a fresh cluster places its streams (ms). */
  retryMs: number;
  /** Hears a bucket whose limits could not all be set (applyLimits); none by default. */
  log?: (event: Record<string, unknown>) => void;
}

/**
 * The limits of one bucket's stream. `max_bytes` is set only where an
 * outsider's messages decide what is written (the registry's records and
 * claims): nats-server reserves a stream's max_bytes against the server's
 * `max_file_store` (1 GiB) at creation, so reserving room for every bucket
 * at its worst case would not fit. The other buckets are bounded by count:
 * their keys are host names that only the controller, or that host's own
 * agent (permissions.ts), can write, so `max_msgs` (hosts × history, twice
 * over for hosts removed from the inventory) and the value size bound them.
 */
export interface BucketLimits {
  history: number;
  maxValueBytes: number;
  maxMsgs: number;
  /** -1: none (see above). */
  maxBytes: number;
  /** ms; 0: kept forever. */
  maxAgeMs: number;
}

/** The limits of each bucket for `history` (desired, applied, rollout), as computed from FLEET_CAPACITY_HOSTS and the value bounds. */
export function bucketLimits(history: number): Record<keyof Buckets | "claims" | "tokens", BucketLimits> {
  const h = Math.max(5, history);
  const perHost = (hist: number, maxValueBytes: number): BucketLimits => ({ history: hist, maxValueBytes, maxMsgs: 2 * FLEET_CAPACITY_HOSTS * hist, maxBytes: -1, maxAgeMs: 0 });
  return {
    desired: perHost(h, MAX_PAYLOAD_BYTES),
    // No history: compare-and-set needs the last revision only. 10,000 × 18 KiB ≈ 178 MiB reserved.
    hosts: { history: 1, maxValueBytes: HOST_RECORD_MAX_BYTES, maxMsgs: FLEET_CAPACITY_HOSTS, maxBytes: FLEET_CAPACITY_HOSTS * (HOST_RECORD_MAX_BYTES + ENTRY_OVERHEAD_BYTES), maxAgeMs: 0 },
    applied: perHost(h, MAX_PAYLOAD_BYTES),
    rollout: perHost(h, MAX_PAYLOAD_BYTES),
    leases: perHost(1, LEASES_MAX_VALUE_BYTES),
    corrective: perHost(1, CORRECTIVE_MAX_VALUE_BYTES),
    // 256 × 18.25 KiB ≈ 4.6 MiB reserved; claims are removed by purging their subject, which leaves no marker.
    claims: { history: 1, maxValueBytes: HOST_RECORD_MAX_BYTES, maxMsgs: CLAIMS_MAX, maxBytes: CLAIMS_MAX * (HOST_RECORD_MAX_BYTES + ENTRY_OVERHEAD_BYTES), maxAgeMs: CLAIMS_MAX_AGE_MS },
    tokens: { history: 1, maxValueBytes: 512, maxMsgs: USED_TOKENS_MAX, maxBytes: -1, maxAgeMs: USED_TOKENS_MAX_AGE_MS },
  };
}

/**
 * Creates (or opens) the site's buckets and its audit stream, brings every
 * bucket's stream to its limits (bucketLimits; also a bucket made by an
 * older version), and makes the buckets where agents each write their own
 * key refuse rollups.
 * @throws when a bucket or stream cannot be made within `retryMs`, or its limits cannot be set.
 */
export async function openBuckets(nc: NatsConnection, site: string, o: BucketOptions): Promise<Buckets> {
  const kvm = new Kvm(nc);
  const limits = bucketLimits(o.history);
  // Right after a cluster starts, a meta leader may not yet see every peer current: "no suitable peers for placement" is retried.
  const create = async (name: string, l: BucketLimits) => {
    const kv = await withRetry(
      () =>
        kvm.create(name, {
          history: l.history,
          replicas: o.replicas,
          allow_direct: true,
          maxValueSize: l.maxValueBytes,
          ...(l.maxBytes > 0 ? { max_bytes: l.maxBytes } : {}),
          ...(l.maxAgeMs > 0 ? { ttl: l.maxAgeMs } : {}),
        }),
      o.retryMs,
    );
    for (const w of await withRetry(() => applyLimits(nc, name, l), o.retryMs)) o.log?.({ event: "bucket-limits", warning: w });
    return kv;
  };
  const buckets: Buckets = {
    desired: await create(desiredBucket(site), limits.desired),
    hosts: {
      records: await create(hostsBucket(site), limits.hosts),
      claims: await create(claimsBucket(site), limits.claims),
      tokens: await create(usedTokensBucket(site), limits.tokens),
      jsm: await jetstreamManager(nc),
    },
    applied: await create(appliedBucket(site), limits.applied),
    rollout: await create(rolloutBucket(site), limits.rollout),
    // Only the last table of each backend matters: no history, and a bounded value.
    leases: await create(leasesBucket(site), limits.leases),
    // The value holds the history: one value per host.
    corrective: await create(correctiveBucket(site), limits.corrective),
  };
  // Backends publish their gateway audit here; its limits rotate it.
  await withRetry(() => ensureAuditStream(nc, site, { replicas: o.replicas }), o.retryMs);
  // Buckets where agents each write their own key: a put with Nats-Rollup: all would wipe the rest.
  for (const bucket of [leasesBucket(site), appliedBucket(site), correctiveBucket(site)]) await denyRollups(nc, bucket);
  return buckets;
}

/**
 * Sets a bucket's stream limits (max_msgs_per_subject, max_msg_size,
 * max_msgs, max_bytes, max_age) when they differ: nats.js `Kvm.create`
 * opens an existing bucket as it is, so a bucket made before these limits
 * existed gets them here. A count or byte limit is never set below what the
 * stream holds now (nats-server would make room by dropping the oldest
 * messages, which in an old registry flooded with junk claims are the
 * approved records): that limit is left as it was, and the returned
 * warning says so (the caller logs it).
 * @returns warnings (empty when every limit was set).
 */
export async function applyLimits(nc: NatsConnection, bucket: string, l: BucketLimits): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(kvStream(bucket));
  const warnings: string[] = [];
  const want: Partial<StreamConfig> = {
    max_msgs_per_subject: l.history,
    max_msg_size: l.maxValueBytes,
    max_msgs: l.maxMsgs,
    max_bytes: l.maxBytes,
    max_age: l.maxAgeMs * 1_000_000,
  };
  if (l.maxMsgs > 0 && info.state.messages > l.maxMsgs) {
    want.max_msgs = info.config.max_msgs;
    warnings.push(`${bucket} holds ${info.state.messages} messages, over its limit of ${l.maxMsgs}: limit not set`);
  }
  if (l.maxBytes > 0 && info.state.bytes > l.maxBytes) {
    want.max_bytes = info.config.max_bytes;
    warnings.push(`${bucket} holds ${info.state.bytes} bytes, over its limit of ${l.maxBytes}: limit not set`);
  }
  const c = info.config as unknown as Record<string, unknown>;
  if (Object.entries(want).every(([k, v]) => c[k] === v)) return warnings;
  await jsm.streams.update(kvStream(bucket), { ...info.config, ...want });
  return warnings;
}

/**
 * Makes a bucket's stream refuse `Nats-Rollup` headers (nats.js creates KV
 * streams with them allowed). In a bucket where many users may each write
 * their own key, a put to one's own key with `Nats-Rollup: all` would
 * otherwise delete every other key of the bucket: permissions only name the
 * subject written to. Puts, gets and deletes of single keys do not use it.
 */
async function denyRollups(nc: NatsConnection, bucket: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(kvStream(bucket));
  if (info.config.allow_rollup_hdrs) await jsm.streams.update(kvStream(bucket), { ...info.config, allow_rollup_hdrs: false });
}
