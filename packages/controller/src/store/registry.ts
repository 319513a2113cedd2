import { createHash } from "node:crypto";
import type { KvEntry } from "@nats-io/kv";
import { DecodeError, EnrollFacts, decodeMessage, encodeMessage, kvStream, kvSubject } from "@netfleet/shared";
import { z } from "zod";
import type { RegistryBuckets } from "./buckets.ts";
import { mutateKey, liveValue, snapshot } from "./kv.ts";

/** A host's enrollment state: quarantined (waiting for an operator), approved, rejected (also: revoked). */
export const HostState = z.enum(["quarantined", "approved", "rejected"]);
export type HostState = z.output<typeof HostState>;

/** Facts as kept: the enrollment token is never stored. */
export const StoredFacts = EnrollFacts.omit({ token: true });
export type StoredFacts = z.output<typeof StoredFacts>;

/**
 * One entry of `nf_<site>_hosts` (keyed by inventory host name) or of
 * `nf_<site>_claims` (a pending claim, keyed by the inventory host it
 * matched or else the claimed name; always `quarantined`).
 */
export const HostRecord = z.strictObject({
  host: z.string(),
  inventory: z.boolean(),
  state: HostState,
  /** Why the host is quarantined, or a pending claim on an approved host. */
  reason: z.string().nullable(),
  matchedBy: z.enum(["hostname", "mac", "token"]).nullable(),
  facts: StoredFacts,
  /** The agent key of the latest claim; `approve` hands credentials to it. */
  claimKey: z.string(),
  /** The agent key credentials were sealed to. */
  approvedKey: z.string().nullable(),
  firstSeen: z.string(),
  lastSeen: z.string(),
  approvedAt: z.string().nullable(),
  /** When the host's credentials were last revoked or rejected: host tokens minted before it no longer approve it. */
  revokedAt: z.string().nullable().optional(),
  /** Agent keys whose claims on this (approved) host an operator rejected, newest last (at most 16): their claims are refused. */
  rejectedKeys: z.array(z.string()).max(16).optional(),
});
export type HostRecord = z.output<typeof HostRecord>;

/** A claim was not stored: the site has CLAIMS_MAX pending claims already. */
export class ClaimsFullError extends Error {
  constructor(count: number) {
    super(`${count} pending claims already (the most kept): approve or reject some (netfleet hosts)`);
    this.name = "ClaimsFullError";
  }
}

/**
 * The host registry: approved (and rejected) records, every write a
 * compare-and-set, and pending claims kept apart in their own bucket so
 * that a claim never touches a record; plus the used host-token nonces.
 */
export class HostRegistry {
  private readonly b: RegistryBuckets;
  constructor(buckets: RegistryBuckets) {
    this.b = buckets;
  }

  /**
   * The host's record, if enrolled (pending claims are not records: see claim()).
   * @throws DecodeError when the stored value is not a record.
   */
  async get(host: string): Promise<HostRecord | undefined> {
    const entry = liveValue(await this.b.records.get(host));
    return entry ? decodeRecord(entry) : undefined;
  }

  /**
   * Every record, by host name, and every pending claim for a name that has
   * no record (shown as quarantined); a claim on a host that has a record
   * shows in that record's reason. Two passes (records, claims).
   */
  async list(): Promise<HostRecord[]> {
    const records = decodeAll(await snapshot(this.b.records));
    const claims = decodeAll(await this.claimEntries());
    for (const [host, claim] of claims) {
      const r = records.get(host);
      if (!r) records.set(host, claim);
      else if (r.claimKey !== claim.claimKey || r.state !== "approved") records.set(host, { ...r, reason: pendingReason(claim) });
    }
    return [...records.keys()].sort().map((k) => records.get(k)!);
  }

  /** Read-modify-write of one record with compare-and-set (see mutateKey); `change` returns undefined to leave it. */
  mutate(host: string, change: (current: HostRecord | undefined) => HostRecord | undefined): Promise<HostRecord | undefined> {
    return mutateKey(this.b.records, host, decodeRecord, encodeMessage, change);
  }

  /** The pending claim for a name, if any. @throws DecodeError when the stored value is not a record. */
  async claim(name: string): Promise<HostRecord | undefined> {
    const entry = liveValue(await this.b.claims.get(name));
    return entry ? decodeRecord(entry) : undefined;
  }

  /**
   * Every pending claim, by name: its keys, then a get each (at most
   * CLAIMS_MAX). Not snapshot(): a claim is removed by purging its subject,
   * so the stream's last sequence may belong to no message left, which a
   * watch waiting for it would never see.
   */
  private async claimEntries(): Promise<Map<string, KvEntry>> {
    const out = new Map<string, KvEntry>();
    if ((await this.claimCount()) === 0) return out;
    const names: string[] = [];
    for await (const k of await this.b.claims.keys()) names.push(k);
    for (const k of names) {
      const e = liveValue(await this.b.claims.get(k));
      if (e) out.set(k, e);
    }
    return out;
  }

  /** How many pending claims the site has (the claims stream's message count: one per live claim). */
  async claimCount(): Promise<number> {
    return (await this.b.claims.status()).values;
  }

  /**
   * Stores a pending claim (state quarantined), replacing the one for the
   * same name; a new name is refused when `max` claims are pending.
   * @throws ClaimsFullError when full; the server's refusal (max_msgs, max_bytes) when the bucket limits are hit.
   */
  async putClaim(record: HostRecord, max: number): Promise<void> {
    const existing = liveValue(await this.b.claims.get(record.host));
    if (!existing) {
      const count = await this.claimCount();
      if (count >= max) throw new ClaimsFullError(count);
    }
    await this.b.claims.put(record.host, encodeMessage({ ...record, state: "quarantined" }));
  }

  /**
   * Removes a name's pending claim, leaving no marker (a purge of its
   * subject in the claims stream). Nothing when there is none: a direct get
   * first, since a purge is a JetStream API request and every approval
   * (thousands at a fleet's first start) calls this.
   */
  async removeClaim(name: string): Promise<void> {
    if (!liveValue(await this.b.claims.get(name))) return;
    // nats.js's KV (a Bucket) carries its bucket name; the interface does not declare it.
    const bucket = (this.b.claims as unknown as { bucket: string }).bucket;
    await this.b.jsm.streams.purge(kvStream(bucket), { filter: kvSubject(bucket, name) });
  }

  /**
   * Marks a host token's nonce used by the agent key `key` (a KV create:
   * only the first caller succeeds, on every server of a cluster). False
   * when it was used before, except by the same host and key: that agent
   * asking again after an enrollment that failed half-way (a store request
   * that timed out after this create landed) goes on, or its token would be
   * spent with no approval. Another key never gets past a used nonce.
   */
  async useToken(nonce: string, host: string, key: string): Promise<boolean> {
    try {
      await this.b.tokens.create(nonce, new TextEncoder().encode(JSON.stringify({ host, key, at: new Date().toISOString() })));
      return true;
    } catch (err) {
      if (!(/wrong last sequence|key exists/i.test((err as Error).message) || (err as { code?: unknown }).code === 10071)) throw err;
    }
    const used = liveValue(await this.b.tokens.get(nonce));
    if (!used) return false;
    try {
      const by = JSON.parse(new TextDecoder().decode(used.value)) as { host?: unknown; key?: unknown };
      return by.host === host && typeof by.key === "string" && by.key === key;
    } catch {
      return false;
    }
  }
}

function pendingReason(claim: HostRecord): string {
  const fp = keyFingerprint(claim.claimKey);
  return `pending claim by another agent key ${fp} (${claim.reason ?? "site token"}); reject it, or approve --replace-key ${fp} to hand the host over`;
}

/** A short name for an agent key (an enroll message's publicKey): the first 16 hex digits of SHA-256 of its DER. */
export function keyFingerprint(publicKey: string): string {
  return createHash("sha256").update(Buffer.from(publicKey, "base64")).digest("hex").slice(0, 16);
}

function decodeAll(entries: Map<string, KvEntry>): Map<string, HostRecord> {
  const out = new Map<string, HostRecord>();
  for (const [k, e] of entries) {
    try {
      out.set(k, decodeRecord(e));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
    }
  }
  return out;
}

function decodeRecord(entry: KvEntry): HostRecord {
  return decodeMessage(HostRecord, `kv ${entry.bucket}/${entry.key}`, entry.value);
}
