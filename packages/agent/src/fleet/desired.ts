import type { NatsConnection } from "@nats-io/transport-node";
import {
  AssignmentRejectedError,
  DecodeError,
  SIGNING_CHAIN_KEY,
  STORED_REVISION_HEADER,
  STORED_SEQUENCE_HEADER,
  acceptedKeyIds,
  decodeSignedAssignment,
  decodeSignedAssignmentValue,
  decodeSigningChain,
  desiredBucket,
  desiredStoredSubject,
  followChain,
  kvSubject,
  parseJson,
  signingKeyId,
  trustPinned,
  verifySignedAssignment,
  type SignedAssignment,
  type TrustedKeys,
  type UnverifiedEnvelope,
} from "@netfleet/shared";
import { pause } from "./connection.ts";
import { readKey, type StoredEntry } from "./kv.ts";
import { AgentState, type Checkpoint } from "./state.ts";

/**
 * Follows the host's key of the desired bucket without a JetStream
 * consumer (an agent may create none), through the controller's word on
 * `nf.<site>.stored.<host>` (shared desiredStoredSubject): sent once the
 * bucket acknowledged a write, it names the stream sequence the bytes were
 * stored at (STORED_SEQUENCE_HEADER) and carries the bytes as its body.
 * Such a word goes to `on.written` as a DesiredWrite whose `stored` is that
 * sequence: the agent may judge and apply it without reading the key. A
 * word without a body (a controller before the body: the bytes were on the
 * key's own subject) or without a sequence goes to `on.word` with the
 * revision it names (0: none): the key is read. The key's own subject
 * (`$KV.<bucket>.<host>`) is not followed: every message there was one more
 * delivery per host and rollout (issue 18), and alone it is only a hint (it
 * reaches subscribers before the stream took the write, and also when the
 * stream refused it). A write made without the controller's store (which
 * only the controller's credentials can make) is therefore found by the
 * agent's resync, not at once. When the word's subscription is refused (a
 * controller before the word does not let agents subscribe to it), the
 * key's subject is followed instead, as then, each write going to
 * `on.word` with the revision its bytes name, and `on.refused` is told.
 */
export function watchDesired(
  nc: NatsConnection,
  site: string,
  host: string,
  on: { written: (write: DesiredWrite) => void; word: (revision: number) => void; refused?: (error: string) => void },
): void {
  const stored = nc.subscribe(desiredStoredSubject(site, host));
  void (async () => {
    try {
      for await (const msg of stored) {
        const seq = storedNumber(msg.headers?.get(STORED_SEQUENCE_HEADER));
        if (seq === undefined || msg.data.length === 0) on.word(storedNumber(msg.headers?.get(STORED_REVISION_HEADER)) ?? 0);
        else on.written({ data: msg.data, ...readHint(msg.data), stored: seq });
      }
    } catch (err) {
      // A controller before the word does not let agents subscribe to it: every write heard on the key is read, as then.
      on.refused?.((err as Error).message);
      followKey(nc, site, host, on);
    }
  })();
}

/** The key's own subject, each write a hint to read the key (watchDesired, with a controller before the word). */
function followKey(nc: NatsConnection, site: string, host: string, on: { word: (revision: number) => void; refused?: (error: string) => void }): void {
  const subject = kvSubject(desiredBucket(site), host);
  const written = nc.subscribe(subject);
  void (async () => {
    try {
      for await (const msg of written) on.word(readHint(msg.data).revision ?? 0);
    } catch (err) {
      // Refused as well: nothing is heard; the agent's resync reads the key.
      on.refused?.(`${subject}: ${(err as Error).message}`);
    }
  })();
}

/**
 * A write the controller said the desired bucket stored for this host: the
 * bytes (the word's body), their JSON and the revision they name (readHint),
 * and `stored`, the stream sequence the word named.
 */
export interface DesiredWrite {
  data: Uint8Array;
  json?: { value: unknown };
  revision?: number;
  stored: number;
}

/** A decimal header value (a stream sequence, a revision): digits only, a positive safe integer; else undefined. */
export function storedNumber(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-9][0-9]{0,15}$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The host's stored desired value (undefined: none). A replica may answer
 * before it has the write behind a hint: while the stored revision is below
 * `hinted`, or there is no value at all, it is read again (10 times, 100 ms
 * apart, or until `signal`); with no hint (`hinted` 0) the first answer is
 * returned.
 * A read that times out or finds no responder (a busy server, a saturated
 * client: the hint's one read used to be dropped, and the new revision was
 * then only seen at the next resync, after the controller's apply timeout)
 * is tried again, READ_RETRIES times with a pause of 250 ms doubling up to
 * 2 s; any other error, or the last one, is thrown.
 */
export async function readDesired(nc: NatsConnection, site: string, host: string, hinted: number, signal: AbortSignal): Promise<StoredEntry | undefined> {
  const bucket = desiredBucket(site);
  let failures = 0;
  for (let attempt = 0; ; attempt++) {
    let stored: StoredEntry | undefined;
    try {
      stored = await readKey(nc, bucket, host);
    } catch (err) {
      if (!retryableRead(err) || ++failures > READ_RETRIES || signal.aborted || nc.isClosed()) throw err;
      await pause(Math.min(2000, 250 * 2 ** (failures - 1)), signal);
      continue;
    }
    if (hinted <= 0 || attempt >= 10 + failures || signal.aborted) return stored;
    // Only the revision is compared here: judge decodes (and verifies) the value returned, once. No value at all is
    // behind the hint too: a direct get may be answered by a replica that has not applied the host's first write yet
    // (3-node cluster: the agent never applied its first revision, the rollout failed on it).
    if (stored) {
      // Parsed once: judge decodes from this value (StoredEntry.json) instead of the bytes.
      const json = parseValue(stored.data);
      const revision = json ? revisionOf(json.value) : undefined;
      if (revision === undefined || revision >= hinted) return json ? { ...stored, json } : stored;
    }
    await pause(100, signal);
  }
}

/**
 * A write seen on the key's subject, read from its JSON alone: the parsed
 * value (undefined when the bytes are not JSON) and the `revision` it names
 * (a positive integer; undefined when none), without decoding the envelope
 * and its assignment (decodeSignedAssignment costs some 50 times more: zod
 * over the whole document and its content hash). Nothing is applied on it
 * alone: SigningTrust.judge decodes and verifies what is applied (these
 * bytes, from `json`, once the controller said the bucket stored them; or
 * the stored value read), and the revision is only a retry condition.
 */
export function readHint(data: Uint8Array): { json?: { value: unknown }; revision?: number } {
  const json = parseValue(data);
  const revision = json ? revisionOf(json.value) : undefined;
  return { ...(json ? { json } : {}), ...(revision !== undefined ? { revision } : {}) };
}

/** The bytes as JSON (shared parseJson: strict UTF-8, then JSON.parse), or undefined when they are not. */
function parseValue(data: Uint8Array): { value: unknown } | undefined {
  try {
    return { value: parseJson("desired value", data) };
  } catch {
    return undefined;
  }
}

/** The `revision` field of a parsed envelope when it is a positive safe integer. */
function revisionOf(value: unknown): number | undefined {
  const revision = value !== null && typeof value === "object" ? (value as { revision?: unknown }).revision : undefined;
  return typeof revision === "number" && Number.isSafeInteger(revision) && revision >= 1 ? revision : undefined;
}

/** How many times readDesired reads again after a timeout or no responder (about 24 s in all with its 2 s read timeout). */
export const READ_RETRIES = 6;

/** A read worth trying again: it timed out, or nobody answered (nats.js TimeoutError, NoRespondersError, "503"). */
function retryableRead(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string | number };
  return /timeout|no ?responders/i.test(`${e?.name ?? ""} ${e?.message ?? ""}`) || String(e?.code) === "503" || String(e?.code) === "TIMEOUT";
}

/** What to do with a stored desired value. */
export type Verdict =
  | { action: "apply"; envelope: SignedAssignment }
  | { action: "keep" }
  | { action: "reject"; reason: string; error: string };

/**
 * Judges a stored desired value against the checkpoint: `keep` when it is the
 * envelope in force, unaltered, or the revision lockout protection undid;
 * `apply` when it decodes, is signed by `signingKey` (a PEM, or a key the
 * trusted set accepts at `now`, ms), names this site and host and is newer
 * than both the revision in force and the one undone; else `reject` with
 * the reason (`decode`, or AssignmentRejectedError's). A value carrying the
 * signature in force on anything else (another signedAt, keyId or
 * document) is verified, and refused.
 */
export function judgeDesired(stored: StoredEntry, checkpoint: Checkpoint, signingKey: string | TrustedKeys, where: { site: string; host: string }, now = Date.now()): Verdict {
  let decoded: UnverifiedEnvelope;
  try {
    decoded = decodeStored(stored, where);
  } catch (err) {
    return decodeVerdict(err);
  }
  return judgeDecoded(decoded, checkpoint, signingKey, where, now);
}

/** The stored desired value decoded (decodeSignedAssignment; from StoredEntry.json when it was parsed already), its source named by bucket, key and stream sequence. */
function decodeStored(stored: StoredEntry, where: { site: string; host: string }): UnverifiedEnvelope {
  const source = `kv ${desiredBucket(where.site)}/${where.host}@${stored.seq}`;
  return stored.json ? decodeSignedAssignmentValue(source, stored.json.value) : decodeSignedAssignment(source, stored.data);
}

/** The `reject` verdict of a value that does not decode; any other error is thrown on. */
function decodeVerdict(err: unknown): Verdict {
  if (err instanceof DecodeError) return { action: "reject", reason: "decode", error: err.message };
  throw err;
}

/** judgeDesired for a value already decoded (decodeStored): the signature is verified here on every call that may apply. */
function judgeDecoded(decoded: UnverifiedEnvelope, checkpoint: Checkpoint, signingKey: string | TrustedKeys, where: { site: string; host: string }, now: number): Verdict {
  const floor = Math.max(checkpoint.current?.revision ?? 0, checkpoint.rolledBack?.revision ?? 0);
  try {
    if (inForce(decoded, checkpoint.current)) return { action: "keep" };
    const undone = checkpoint.rolledBack;
    if (undone && decoded.revision === undone.revision && decoded.assignment.hash === undone.hash) return { action: "keep" };
    return { action: "apply", envelope: verifySignedAssignment(decoded, signingKey, floor, where, now) };
  } catch (err) {
    if (err instanceof AssignmentRejectedError) return { action: "reject", reason: err.reason, error: err.message };
    if (err instanceof DecodeError) return { action: "reject", reason: "decode", error: err.message };
    throw err;
  }
}

/** True when `decoded` is `current` in every signed field (revision, signedAt, keyId, document hash) and signature. */
function inForce(decoded: { revision: number; signedAt: string; signature?: string; keyId?: string; assignment: { hash: string } }, current: SignedAssignment | undefined): boolean {
  return (
    current !== undefined &&
    decoded.revision === current.revision &&
    decoded.signature === current.signature &&
    decoded.signedAt === current.signedAt &&
    decoded.keyId === current.keyId &&
    decoded.assignment.hash === current.assignment.hash
  );
}

/** What a SigningTrust needs: the agent's run dir, its site, the key pinned at enrollment, a log. */
export interface SigningTrustOptions {
  runDir: string;
  site: string;
  /** The controller key the agent was given (the welcome's, or --signing-key): where the chain is followed from. */
  pinnedKeyPem: string;
  log: (event: Record<string, unknown>) => void;
  /** The clock (ms since the epoch) against which earlier keys' overlaps end; Date.now by default. */
  now?: () => number;
}

/**
 * The controller keys an agent trusts across a key rotation (shared
 * signing.ts: TrustedKeys, followChain). It starts from the pinned key and
 * learns newer ones from the signed chain in the desired bucket
 * (SIGNING_CHAIN_KEY, one direct get), only when an assignment is signed by
 * a key other than the active one: the controller re-signs every host's
 * assignment after a rotation, so an online agent learns at once and an
 * agent that was away learns on its first read. What it learned is kept in
 * the run dir (AgentState signing-keys.json). A chain link not signed by the
 * key in force (a forged announcement) is refused and logged
 * (`key-chain-rejected`); the keys held stay.
 */
export class SigningTrust {
  private readonly o: SigningTrustOptions;
  private readonly state: AgentState;
  private readonly pinnedKeyId: string;
  private trust: TrustedKeys | undefined;

  constructor(options: SigningTrustOptions) {
    this.o = options;
    this.state = new AgentState(options.runDir);
    this.pinnedKeyId = signingKeyId(options.pinnedKeyPem);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** The trusted set: learned keys from the run dir when they were learned from the same pinned key, else the pinned key alone. */
  async keys(): Promise<TrustedKeys> {
    if (!this.trust) {
      const saved = await this.state.trustedKeys();
      this.trust = saved && saved.pinnedKeyId === this.pinnedKeyId ? saved.trust : trustPinned(this.o.pinnedKeyPem);
    }
    return this.trust;
  }

  /**
   * Reads the chain and follows it from the trusted set (followChain); keeps
   * and returns the set after it. A chain that cannot be read (no value, no
   * answer) leaves the set as it is; one that does not decode, or a link
   * refused, is logged (`key-chain-rejected`, with the reason and the keys
   * kept); a key learned is logged (`signing-key-learned`).
   */
  async refresh(nc: NatsConnection): Promise<TrustedKeys> {
    const before = await this.keys();
    const source = `kv ${desiredBucket(this.o.site)}/${SIGNING_CHAIN_KEY}`;
    let stored: StoredEntry | undefined;
    try {
      stored = await readKey(nc, desiredBucket(this.o.site), SIGNING_CHAIN_KEY);
    } catch (err) {
      this.o.log({ event: "key-chain-unread", error: (err as Error).message });
      return before;
    }
    if (!stored || stored.operation !== "PUT") return before;
    const now = this.now();
    let result;
    try {
      result = followChain(before, decodeSigningChain(`${source}@${stored.seq}`, stored.data), this.o.site);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.o.log({ event: "key-chain-rejected", reason: "decode", error: err.message, keeping: acceptedKeyIds(before, now) });
      return before;
    }
    if (result.refused) {
      this.o.log({ event: "key-chain-rejected", seq: result.refused.seq, reason: result.refused.reason, error: result.refused.message, keeping: acceptedKeyIds(result.trust, now) });
    }
    if (JSON.stringify(result.trust) !== JSON.stringify(before)) {
      await this.state.saveTrustedKeys(this.pinnedKeyId, result.trust);
      this.trust = result.trust;
      for (const link of result.followed) {
        this.o.log({ event: link.keyId === link.signerKeyId ? "signing-key-retired" : "signing-key-learned", seq: link.seq, keyId: link.keyId, previousKeyId: link.previousKeyId, previousNotAfter: link.previousNotAfter });
      }
    }
    return this.trust ?? before;
  }

  /**
   * judgeDesired against the trusted set; when the stored value is signed by
   * a key other than the active one (a rotation the agent has not followed
   * yet, or an earlier key a retirement may have refused since), the chain
   * is read first.
   */
  async judge(nc: NatsConnection, stored: StoredEntry, checkpoint: Checkpoint, where: { site: string; host: string }): Promise<Verdict> {
    let trust = await this.keys();
    // Decoded once: the key id it names picks the trusted set, and the same decoded value is judged (and verified) against it.
    let decoded: UnverifiedEnvelope;
    try {
      decoded = decodeStored(stored, where);
    } catch (err) {
      return decodeVerdict(err);
    }
    const keyId = decoded.keyId;
    if (keyId !== undefined && keyId !== trust.active.keyId) trust = await this.refresh(nc);
    return judgeDecoded(decoded, checkpoint, trust, where, this.now());
  }
}
