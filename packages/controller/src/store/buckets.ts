import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  CORRECTIVE_MAX_VALUE_BYTES,
  LEASES_MAX_VALUE_BYTES,
  appliedBucket,
  correctiveBucket,
  desiredBucket,
  hostsBucket,
  kvStream,
  leasesBucket,
  rolloutBucket,
} from "@netfleet/shared";
import { ensureAuditStream } from "./audit.ts";
import { withRetry } from "./kv.ts";

/** The site's KV buckets (`nf_<site>_<name>`). */
export interface Buckets {
  /** Signed assignments, one key per host (written by the controller). */
  desired: KV;
  /** The host registry (enrollment records). */
  hosts: KV;
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
  /** KV history per key (at least 5 is kept). */
  history: number;
  /** How long creation retries while a fresh cluster places its streams (ms). */
  retryMs: number;
}

/**
 * Creates (or opens) the site's buckets and its audit stream, and makes the
 * buckets where agents each write their own key refuse rollups.
 * @throws when a bucket or stream cannot be made within `retryMs`, or exists with other settings.
 */
export async function openBuckets(nc: NatsConnection, site: string, o: BucketOptions): Promise<Buckets> {
  const kvm = new Kvm(nc);
  const opts = { history: Math.max(5, o.history), replicas: o.replicas, allow_direct: true };
  // Right after a cluster starts, a meta leader may not yet see every peer current: "no suitable peers for placement" is retried.
  const create = (name: string, options: Parameters<Kvm["create"]>[1]) => withRetry(() => kvm.create(name, options), o.retryMs);
  const buckets: Buckets = {
    desired: await create(desiredBucket(site), opts),
    hosts: await create(hostsBucket(site), opts),
    applied: await create(appliedBucket(site), opts),
    rollout: await create(rolloutBucket(site), opts),
    // Only the last table of each backend matters: no history, and a bounded value.
    leases: await create(leasesBucket(site), { history: 1, replicas: o.replicas, allow_direct: true, maxValueSize: LEASES_MAX_VALUE_BYTES }),
    // The value holds the history: one value per host.
    corrective: await create(correctiveBucket(site), { history: 1, replicas: o.replicas, allow_direct: true, maxValueSize: CORRECTIVE_MAX_VALUE_BYTES }),
  };
  // Backends publish their gateway audit here; its limits rotate it.
  await withRetry(() => ensureAuditStream(nc, site, { replicas: o.replicas }), o.retryMs);
  // Buckets where agents each write their own key: a put with Nats-Rollup: all would wipe the rest.
  for (const bucket of [leasesBucket(site), appliedBucket(site), correctiveBucket(site)]) await denyRollups(nc, bucket);
  return buckets;
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
