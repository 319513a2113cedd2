import type { KV, KvEntry } from "@nats-io/kv";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import {
  STORED_DIGEST_HEADER,
  STORED_REVISION_HEADER,
  STORED_SEQUENCE_HEADER,
  desiredStoredSubject,
  storedDigest,
  DecodeError,
  PROTOCOL_VERSION,
  SIGNING_CHAIN_KEY,
  parseProtocolVersion,
  decodeSignedAssignment,
  decodeSigningChain,
  encodeMessage,
  signAssignment,
  type KeyAnnouncement,
  type SigningChain,
  type HostAssignment,
  type SignedAssignment,
  type UnverifiedEnvelope,
} from "@netfleet/shared";
import { compareAndSet, isRevisionConflict, liveValue, snapshot, withRetry } from "./kv.ts";

/**
 * Told of each host envelope the desired bucket acknowledged: the host, the
 * bytes stored, the KV revision (stream sequence) they were stored at, and
 * the envelope's revision. ControlPlane tells the host's agent (shared
 * subjects.ts desiredStoredSubject). Synchronous; what it throws is logged,
 * not thrown.
 */
export type StoredNotice = (host: string, value: Uint8Array, kvRevision: number, revision: number) => void;

/**
 * Sends the controller's word that the desired bucket of `site` stored
 * `value` for `host` at stream sequence `kvRevision` (the envelope's
 * revision `revision`): a message on desiredStoredSubject whose body is
 * `value` and whose headers are STORED_SEQUENCE_HEADER,
 * STORED_REVISION_HEADER and STORED_DIGEST_HEADER (sha256 hex of `value`,
 * storedDigest). The host's agent judges the body as the stored value
 * (agent fleet/desired.ts watchDesired); an agent before the body ignores
 * it and matches the digest to the write it heard on the key's subject.
 * A value within STORED_WORD_HEADROOM bytes of the server's max_payload goes
 * without the body (the agent reads the key then).
 * `nc` must be allowed to publish there (only the controller is). Core NATS
 * publish: throws only on a closed connection.
 */
export function publishStoredWord(nc: NatsConnection, site: string, host: string, value: Uint8Array, kvRevision: number, revision: number): void {
  const h = headers();
  h.set(STORED_SEQUENCE_HEADER, String(kvRevision));
  h.set(STORED_REVISION_HEADER, String(revision));
  h.set(STORED_DIGEST_HEADER, storedDigest(value));
  // An envelope too big to go again with the headers (within STORED_WORD_HEADROOM of the server's max_payload, which
  // the put itself fitted) goes without: the agent reads the key for a word without the bytes.
  const fits = value.length + STORED_WORD_HEADROOM <= (nc.info?.max_payload ?? Number.POSITIVE_INFINITY);
  nc.publish(desiredStoredSubject(site, host), fits ? value : undefined, { headers: h });
}

/** Bytes kept for the stored word's headers and protocol line when it carries the stored bytes (publishStoredWord). */
export const STORED_WORD_HEADROOM = 1024;

/** DesiredStore's options; see its constructor. */
export interface DesiredStoreOptions {
  retryMs?: number;
  log?: (event: Record<string, unknown>) => void;
  createNew?: (key: string, value: Uint8Array) => Promise<number>;
  stored?: StoredNotice;
}

/** A host's desired entry as read: the signed envelope (not verified here) and its KV revision. */
export interface DesiredEntry {
  envelope: UnverifiedEnvelope;
  /** The KV revision (stream sequence) of the entry: what compare-and-set compares. */
  kvRevision: number;
}

/** A host's desired revision and assignment hash as stored, not decoded further (DesiredStore.readHeads). */
export interface DesiredHead {
  revision: number;
  hash: string;
  kvRevision: number;
}

/** What a publish wrote (or found already there). */
export interface PublishResult {
  host: string;
  /** The assignment revision (the controller's per-host counter the agent checks). */
  revision: number;
  kvRevision: number;
  hash: string;
  /** False when the same document was already published. */
  changed: boolean;
}

/** The desired entry moved on since the caller read it (another publisher, or a stale `basedOn`). */
export class StaleRevisionError extends Error {
  readonly host: string;
  readonly expected: number;
  readonly actual: number;
  constructor(host: string, expected: number, actual: number) {
    super(`desired state of ${host} is at KV revision ${actual}, not ${expected}: someone published meanwhile; re-read and retry`);
    this.name = "StaleRevisionError";
    this.host = host;
    this.expected = expected;
    this.actual = actual;
  }
}

/** What re-signing did per host (DesiredStore.resign). */
export interface ResignResult {
  host: string;
  /** The key that had signed the entry. */
  fromKeyId: string | undefined;
  /** Set when re-signed: the new revision. */
  revision?: number;
  /** Set when not re-signed: why (another publisher meanwhile, a value that is not this host's). */
  error?: string;
}

/**
 * Signed assignments in `nf_<site>_desired`, written only with
 * compare-and-set; and the site's signing-key chain in the same bucket
 * (SIGNING_CHAIN_KEY, shared signing.ts), which agents read to follow a
 * key rotation.
 */
export class DesiredStore {
  private readonly kv: KV;
  private readonly privateKeyPem: string;
  private readonly retryMs: number;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly createNew: ((key: string, value: Uint8Array) => Promise<number>) | undefined;
  private readonly stored: StoredNotice | undefined;
  /** The options as given: what `withKey` builds its store with. */
  private readonly options: DesiredStoreOptions;

  /**
   * `createNew` (optional): writes a key that has never had a value in the bucket (JetStream's
   * expected last subject sequence 0; a deleted key refuses it, with a revision conflict), resolving
   * with the new KV revision. nats.js KV's own create writes over a delete; `publish` without a read
   * of its own (`known` null) needs the strict one, and reads first without it.
   * `stored` (optional): told of each host envelope this store wrote, once the bucket acknowledged it or a read
   * found it there after an acknowledgement was lost (StoredNotice).
   */
  constructor(kv: KV, privateKeyPem: string, options: DesiredStoreOptions = {}) {
    this.kv = kv;
    this.privateKeyPem = privateKeyPem;
    this.retryMs = options.retryMs ?? 30_000;
    this.log = options.log ?? (() => {});
    this.createNew = options.createNew;
    this.stored = options.stored;
    this.options = options;
  }

  /** The same bucket, signing with another key (PKCS#8 PEM): after `netfleet keys rotate`. */
  withKey(privateKeyPem: string): DesiredStore {
    return new DesiredStore(this.kv, privateKeyPem, this.options);
  }

  /** Tells `stored` of a write the bucket acknowledged; a failure to send is logged, never thrown (the agent's resync reads the key). */
  private notify(host: string, value: Uint8Array, kvRevision: number, revision: number): void {
    try {
      this.stored?.(host, value, kvRevision, revision);
    } catch (err) {
      this.log({ event: "stored-notice-failed", host, kvRevision, error: (err as Error).message });
    }
  }

  /**
   * The published signing-key chain (undefined: none yet, the site still
   * signs with its first key).
   * @throws DecodeError when the stored value is not a chain.
   */
  async readSigningChain(): Promise<SigningChain | undefined> {
    const entry = liveValue(await this.kv.get(SIGNING_CHAIN_KEY));
    return entry ? decodeSigningChain(`kv ${entry.bucket}/${SIGNING_CHAIN_KEY}@${entry.revision}`, entry.value) : undefined;
  }

  /**
   * Writes the chain (every link, oldest first) over whatever is there,
   * retried through a failover; resolves with its KV revision. The links
   * carry their own signatures; the list is not signed.
   */
  publishSigningChain(site: string, links: readonly KeyAnnouncement[]): Promise<number> {
    const chain: SigningChain = { kind: "signing-chain", site, links: [...links] };
    return withRetry(() => this.kv.put(SIGNING_CHAIN_KEY, encodeMessage(chain)), this.retryMs, (err) => this.log({ event: "publish-retry", key: SIGNING_CHAIN_KEY, error: err.message }));
  }

  /**
   * Re-signs every host's current assignment that is not signed by `keyId`
   * (the key this store signs with) as the next revision (publish with
   * force, on top of the value read, above `floor(host)`), so agents move to
   * the new key; entries that do not decode or name another host are left alone.
   */
  async resign(keyId: string, floor?: (host: string) => Promise<number>): Promise<ResignResult[]> {
    const out: ResignResult[] = [];
    for (const [host, entry] of await this.readAll()) {
      const fromKeyId = entry.envelope.keyId;
      if (fromKeyId === keyId || entry.envelope.assignment.host !== host) continue;
      try {
        const r = await this.publish(entry.envelope.assignment, { basedOn: entry.kvRevision, force: true, ...(floor ? { floor: () => floor(host) } : {}) });
        out.push({ host, fromKeyId, revision: r.revision });
      } catch (err) {
        if (!(err instanceof StaleRevisionError)) throw err;
        out.push({ host, fromKeyId, error: err.message });
      }
    }
    return out;
  }

  /**
   * The host's current entry (undefined: none, or deleted).
   * @throws DecodeError when the value is not a signed assignment.
   */
  async read(host: string): Promise<DesiredEntry | undefined> {
    const entry = liveValue(await this.kv.get(host));
    return entry ? { envelope: decodeEntry(entry), kvRevision: entry.revision } : undefined;
  }

  /** Every host's current entry in one pass over the bucket (entries that do not decode are left out). */
  async readAll(): Promise<Map<string, DesiredEntry>> {
    const out = new Map<string, DesiredEntry>();
    for (const [host, entry] of await snapshot(this.kv)) {
      const envelope = decodeEntryOrUndefined(entry);
      if (envelope) out.set(host, { envelope, kvRevision: entry.revision });
    }
    return out;
  }

  /**
   * Every host's current revision and assignment hash in one pass over the
   * bucket, without decoding the assignments: what `netfleet status` shows
   * of a fleet (a full decode is most of the cost of reading 10,000 entries).
   * Only this controller writes the bucket (agents read their own key:
   * nats/permissions.ts); a value is still taken only when it is JSON of
   * our protocol major with a positive integer `revision` and an
   * `assignment` naming its key's host with a 64-hex `hash` (the signing
   * key chain and junk are left out). Nothing is verified: agents do that.
   * @throws when the bucket cannot be read (snapshot).
   */
  async readHeads(): Promise<Map<string, DesiredHead>> {
    const out = new Map<string, DesiredHead>();
    const major = parseProtocolVersion(PROTOCOL_VERSION)!.major;
    for (const [host, entry] of await snapshot(this.kv)) {
      let v: { protocol?: unknown; revision?: unknown; assignment?: { host?: unknown; hash?: unknown } } | null;
      try {
        v = JSON.parse(new TextDecoder().decode(entry.value)) as typeof v;
      } catch {
        continue;
      }
      if (v === null || typeof v !== "object" || typeof v.assignment !== "object" || v.assignment === null) continue;
      const version = typeof v.protocol === "string" ? parseProtocolVersion(v.protocol) : undefined;
      if (version?.major !== major) continue;
      const { revision, assignment } = v;
      if (!Number.isSafeInteger(revision) || (revision as number) < 1 || assignment.host !== host || typeof assignment.hash !== "string" || !/^[0-9a-f]{64}$/.test(assignment.hash)) continue;
      out.set(host, { revision: revision as number, hash: assignment.hash, kvRevision: entry.revision });
    }
    return out;
  }

  /**
   * Signs the assignment with the next revision and writes it only if the
   * key is still where we read it (or at `basedOn` when given). Transient
   * failures (a server or leader lost) are retried; a write whose
   * acknowledgement was lost is recognised by its signature on the next read.
   * `floor`: the revision the agent runs (it refuses anything not newer):
   * the revision signed is above it, and a stored value below it is never
   * taken for "already published". `plan`: signed into the envelope
   * (SignedAssignment.plan, `rollout --plan`); pass `force` with it, so that
   * an identical document already stored does not stand in for the plan's.
   * `known` (with `basedOn`): what the caller read at `basedOn`, the stored
   * envelope's revision and assignment hash (null: no value there, `basedOn`
   * 0): the first attempt writes on that without reading the key again (a
   * rollout read every host's entry in one pass already); the
   * compare-and-set still refuses a key that moved since (StaleRevisionError),
   * and every later attempt reads as without it.
   */
  async publish(
    assignment: HostAssignment,
    options: { basedOn?: number; known?: { revision: number; hash: string } | null; force?: boolean; floor?: () => Promise<number>; plan?: { observed: string } } = {},
  ): Promise<PublishResult> {
    const host = assignment.host;
    const attempted = new Set<string>();
    // The caller's read stands in for the first one only when it is complete: a value that decoded, or no value at KV revision 0.
    let known =
      options.basedOn !== undefined && options.known !== undefined && (options.known !== null ? options.basedOn > 0 : options.basedOn === 0 && this.createNew !== undefined)
        ? { kvRevision: options.basedOn, value: options.known }
        : undefined;
    // Without basedOn the caller asks for "on top of whatever is there": a conflict with a value
    // newer than the one read (a read served by a replica that lagged during a leader change, or
    // another writer) is re-read and retried, at most this many times, instead of refused.
    // A plain bounded loop inside the p-retry of withRetry (which is for transient failures, with
    // backoff): a lost compare-and-set is settled by reading again at once.
    let rereads = 3;
    return withRetry(
      async () => {
        for (;;) {
          let entry: { revision: number } | undefined;
          let current: { revision: number; hash: string; host: string } | undefined;
          let raw: KvEntry | null = null;
          const fast = known !== undefined;
          if (known) {
            // The caller's read (see `known`), for this first attempt only.
            entry = known.value ? { revision: known.kvRevision } : undefined;
            current = known.value ? { revision: known.value.revision, hash: known.value.hash, host } : undefined;
            known = undefined;
          } else {
            raw = await this.kv.get(host);
            const live = liveValue(raw);
            const decoded = live ? decodeEntryOrUndefined(live) : undefined;
            if (live && decoded?.signature !== undefined && attempted.has(decoded.signature)) {
              // An earlier attempt's write, whose acknowledgement was lost: its word was never sent.
              this.notify(host, live.value, live.revision, decoded.revision);
              return { host, revision: decoded.revision, kvRevision: live.revision, hash: decoded.assignment.hash, changed: true };
            }
            entry = live;
            current = decoded ? { revision: decoded.revision, hash: decoded.assignment.hash, host: decoded.assignment.host } : undefined;
          }
          if (options.basedOn !== undefined && (entry?.revision ?? 0) !== options.basedOn) {
            throw new StaleRevisionError(host, options.basedOn, entry?.revision ?? 0);
          }
          // The revision the agent runs: a stored value below it is not what the host has (an older envelope replayed into the key).
          const floor = (await options.floor?.()) ?? 0;
          if (entry && current && current.hash === assignment.hash && current.host === host && current.revision >= floor && !options.force) {
            return { host, revision: current.revision, kvRevision: entry.revision, hash: assignment.hash, changed: false };
          }
          // Without a value that decodes (none yet, deleted, or overwritten with junk), revisions continue above
          // every one in the key's history; always above `floor` (history keeps 5 values only; a replay may hold an older one).
          const previous = Math.max(current?.revision ?? (raw ? await this.highestRevision(host) : 0), floor);
          const envelope: SignedAssignment = signAssignment(assignment, previous + 1, this.privateKeyPem, undefined, options.plan ? { plan: options.plan } : {});
          attempted.add(envelope.signature);
          try {
            // Without a read, "no value" must mean none ever: a strict create (previousSeq 0), which a deleted key
            // refuses (compareAndSet's create would write over the delete, below revisions in the key's history).
            const bytes = encodeMessage(envelope);
            const kvRevision = fast && !entry ? await this.createNew!(host, bytes) : await compareAndSet(this.kv, host, bytes, entry?.revision);
            this.notify(host, bytes, kvRevision, envelope.revision);
            return { host, revision: envelope.revision, kvRevision, hash: assignment.hash, changed: true };
          } catch (err) {
            if (!isRevisionConflict(err)) throw err;
            // Written on the caller's read, which was not the key's state any more: read it and judge as usual.
            if (fast) continue;
            const now = liveValue(await this.kv.get(host));
            const stored = now ? decodeEntryOrUndefined(now) : undefined;
            // Ours after all: this attempt's write, or an earlier attempt's whose acknowledgement was lost
            // (a read during a leader change may be served by a replica that had not seen it yet).
            if (now && stored?.signature !== undefined && attempted.has(stored.signature)) {
              this.notify(host, now.value, now.revision, stored.revision);
              return { host, revision: stored.revision, kvRevision: now.revision, hash: stored.assignment.hash, changed: true };
            }
            if (options.basedOn === undefined && rereads-- > 0) continue;
            throw new StaleRevisionError(host, entry?.revision ?? 0, now?.revision ?? 0);
          }
        }
      },
      this.retryMs,
      (err) => this.log({ event: "publish-retry", host, error: err.message }),
    );
  }

  /**
   * The assignment this host had at `revision`, from the key's history (kept
   * for a few revisions). Only an envelope for this host counts: another
   * host's envelope written into the key (a replay) is never taken for it.
   */
  async atRevision(host: string, revision: number): Promise<UnverifiedEnvelope | undefined> {
    let found: UnverifiedEnvelope | undefined;
    const history = await this.kv.history({ key: host });
    for await (const e of history) {
      if (e.operation !== "PUT") continue;
      const env = decodeEntryOrUndefined(e as unknown as KvEntry);
      if (env?.revision === revision && env.assignment.host === host) found = env;
    }
    return found;
  }

  /** After a delete, revisions continue above the highest one ever written, so agents accept the next. */
  private async highestRevision(host: string): Promise<number> {
    let highest = 0;
    const history = await this.kv.history({ key: host });
    for await (const e of history) {
      if (e.operation !== "PUT") continue;
      const env = decodeEntryOrUndefined(e as unknown as KvEntry);
      if (env) highest = Math.max(highest, env.revision);
    }
    return highest;
  }
}

function decodeEntry(entry: KvEntry): UnverifiedEnvelope {
  return decodeSignedAssignment(`kv ${entry.bucket}/${entry.key}@${entry.revision}`, entry.value);
}

function decodeEntryOrUndefined(entry: KvEntry): UnverifiedEnvelope | undefined {
  try {
    return decodeEntry(entry);
  } catch (err) {
    if (err instanceof DecodeError) return undefined;
    throw err;
  }
}
