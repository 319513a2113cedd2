import type { NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type StreamConfig } from "@nats-io/jetstream";
import { AuditBatch, DecodeError, auditStream, auditSubject, decodeMessage, parseAuditSubject, type AuditRecord } from "@netfleet/shared";

/** How long audit batches are kept (the stream's max_age): 30 days, ms. */
const AUDIT_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/**
 * Most bytes the audit stream holds before the oldest batches go (max_bytes):
 * 512 MiB. A stream's max_bytes is reserved against the server's
 * `max_file_store` (1 GiB, nats-config.ts), so the audit may take half and
 * leaves the rest for the KV buckets and the rollout streams.
 */
const AUDIT_MAX_BYTES = 512 * 1024 ** 2;
/** Largest batch the stream takes (max_msg_size): 256 KiB, twice a full batch of 500 records. */
const AUDIT_MAX_MSG_BYTES = 256 * 1024;

/** The audit stream's replicas and rotation limits. */
export interface AuditStreamLimits {
  replicas?: number;
  /** ms (default AUDIT_MAX_AGE_MS). */
  maxAgeMs?: number;
  /** bytes (default AUDIT_MAX_BYTES). */
  maxBytes?: number;
}

/**
 * Creates the site's audit stream `nf_<site>_audit` (subjects
 * `nf.<site>.audit.*.*`), or brings an existing one to these limits. The
 * limits are the rotation: batches older than `maxAgeMs`, or beyond
 * `maxBytes` (oldest first, discard old), are removed by the server.
 * Rollup headers are refused (a publisher could otherwise purge a subject),
 * and so are deletes of single messages through the API.
 * @throws when the stream cannot be created or updated.
 */
export async function ensureAuditStream(nc: NatsConnection, site: string, limits: AuditStreamLimits = {}): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config: Partial<StreamConfig> & { name: string } = {
    name: auditStream(site),
    subjects: [auditSubject(site, "*", "*")],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: (limits.maxAgeMs ?? AUDIT_MAX_AGE_MS) * 1_000_000,
    max_bytes: limits.maxBytes ?? AUDIT_MAX_BYTES,
    max_msg_size: AUDIT_MAX_MSG_BYTES,
    num_replicas: limits.replicas ?? 1,
    allow_rollup_hdrs: false,
    deny_delete: true,
    allow_direct: false,
  };
  try {
    const info = await jsm.streams.info(config.name);
    const current = info.config;
    if (current.max_age !== config.max_age || current.max_bytes !== config.max_bytes || current.max_msg_size !== config.max_msg_size || current.allow_rollup_hdrs || !current.deny_delete) {
      await jsm.streams.update(config.name, { ...current, ...config, num_replicas: current.num_replicas });
    }
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
    await jsm.streams.add(config);
  }
}

/** One record as read back, with the backend host that published it. */
export interface StoredAuditRecord extends AuditRecord {
  host: string;
}

/** Which audit records readAudit returns. */
export interface AuditQuery {
  /** Networks to read (one ordered consumer each; nats-server 2.9 takes one filter subject per consumer). */
  networks: readonly string[];
  /** Batches stored at or after this time. */
  since: Date;
  /** Keep a record or not (e.g. it concerns the VM asked about). */
  match: (record: AuditRecord) => boolean;
  /** Per fetch, ms (default 2000). */
  fetchExpiresMs?: number;
}

/** What readAudit found. */
export interface AuditResult {
  /** Matching records, oldest first (by the time the kernel logged them). */
  records: StoredAuditRecord[];
  /** Records the backends' collectors reported lost in the batches read (any VM's). */
  lost: number;
  /** Batches read, and batches refused as not valid (named in `invalid`). */
  batches: number;
  invalid: string[];
}

/**
 * Reads the audit batches of `networks` stored since `since`, one ordered
 * consumer per network (deliver by start time, filter
 * `nf.<site>.audit.*.<network>`), until each has delivered what the stream
 * held when it started. A batch is checked at this boundary: it must decode
 * as an AuditBatch whose host, site and network are those of its subject,
 * and whose records all name that network; a batch that does not is not
 * used and is listed in `invalid`.
 * @throws when the stream does not exist or cannot be read.
 */
export async function readAudit(nc: NatsConnection, site: string, query: AuditQuery): Promise<AuditResult> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const stream = auditStream(site);
  const held = (await jsm.streams.info(stream)).state.messages;
  const result: AuditResult = { records: [], lost: 0, batches: 0, invalid: [] };
  for (const network of [...new Set(query.networks)]) {
    const consumer = await js.consumers.get(stream, {
      filter_subjects: auditSubject(site, "*", network),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: query.since.toISOString(),
    });
    try {
      // Bounded: the stream held `held` batches when we began; each round delivers at least one or ends.
      for (let round = 0, read = 0; read < held && round <= held; round++) {
        const messages = await consumer.fetch({ max_messages: 256, expires: query.fetchExpiresMs ?? 2000 });
        let got = 0;
        let pending = -1;
        for await (const m of messages) {
          got++;
          read++;
          pending = m.info.pending;
          useBatch(site, network, m.subject, m.data, query, result);
          if (pending === 0) break;
        }
        if (got === 0 || pending === 0) break;
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
  }
  result.records.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  return result;
}

function useBatch(site: string, network: string, subject: string, data: Uint8Array, query: AuditQuery, result: AuditResult): void {
  result.batches++;
  const where = parseAuditSubject(subject);
  let batch: AuditBatch;
  try {
    batch = decodeMessage(AuditBatch, subject, data);
    if (!where || where.site !== site || batch.site !== site || batch.host !== where.host || batch.network !== where.network || where.network !== network) {
      throw new DecodeError(subject, "host", "batch names another host, site or network than its subject");
    }
    const stray = batch.records.find((r) => r.network !== batch.network);
    if (stray) throw new DecodeError(subject, "records.network", `a record of network ${stray.network} in a batch of ${batch.network}`);
  } catch (err) {
    if (result.invalid.length < 100) result.invalid.push((err as Error).message.slice(0, 300));
    return;
  }
  result.lost += batch.lost;
  for (const record of batch.records) if (query.match(record)) result.records.push({ ...record, host: batch.host });
}
