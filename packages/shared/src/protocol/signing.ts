import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { z } from "zod";
import { HostAssignment, decodeAssignment } from "../assignment.ts";
import { canonicalJson } from "../canonical.ts";
import { DecodeError } from "../errors.ts";

/**
 * Assignments travel signed (ed25519 over the canonical JSON of assignment,
 * revision, signedAt and keyId), so neither the document nor its revision
 * can be altered or replayed with a higher number. The revision is the
 * controller's per-host counter, independent of KV sequence numbers.
 */
export interface SignedAssignment {
  assignment: HostAssignment;
  revision: number;
  signedAt: string;
  signature: string;
  keyId: string;
}

/** An envelope as decoded from the wire: the signature may be missing; `verifySignedAssignment` decides. */
export const SignedAssignmentWire = z.strictObject({
  assignment: z.unknown(),
  revision: z.number().int().min(1),
  signedAt: z.iso.datetime({ offset: true }),
  signature: z.string().max(200).optional(),
  keyId: z.string().max(64).optional(),
});
export type UnverifiedEnvelope = Omit<SignedAssignment, "signature" | "keyId"> & { signature?: string; keyId?: string };

export type RejectionReason = "unsigned" | "unknown-key" | "bad-signature" | "wrong-host" | "stale-revision";

/** A well-formed envelope the agent will not apply. The current assignment stays. */
export class AssignmentRejectedError extends Error {
  readonly reason: RejectionReason;
  readonly revision: number;
  constructor(reason: RejectionReason, revision: number, message: string) {
    super(message);
    this.name = "AssignmentRejectedError";
    this.reason = reason;
    this.revision = revision;
  }
}

export interface SigningKeys {
  keyId: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

export function generateSigningKeys(): SigningKeys {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    keyId: signingKeyId(publicKey),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** First 16 hex digits of the sha256 of the public key (SPKI DER). */
export function signingKeyId(publicKey: KeyObject | string): string {
  const key = typeof publicKey === "string" ? createPublicKey(publicKey) : publicKey;
  return createHash("sha256").update(key.export({ type: "spki", format: "der" })).digest("hex").slice(0, 16);
}

function signedBytes(e: { assignment: HostAssignment; revision: number; signedAt: string; keyId: string }): Buffer {
  return Buffer.from(canonicalJson({ assignment: e.assignment, revision: e.revision, signedAt: e.signedAt, keyId: e.keyId }));
}

/** Parsed keys by PEM: parsing a key and deriving its id costs more than the signature itself. A controller has one key. */
const privateKeys = new Map<string, { key: KeyObject; keyId: string }>();
const publicKeys = new Map<string, { key: KeyObject; keyId: string }>();
const KEY_CACHE_MAX = 16;

function remember<T>(cache: Map<string, T>, pem: string, make: () => T): T {
  let hit = cache.get(pem);
  if (!hit) {
    hit = make();
    if (cache.size >= KEY_CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(pem, hit);
  }
  return hit;
}

function privateKeyOf(pem: string): { key: KeyObject; keyId: string } {
  return remember(privateKeys, pem, () => {
    const key = createPrivateKey(pem);
    return { key, keyId: signingKeyId(createPublicKey(key)) };
  });
}

function publicKeyOf(publicKey: KeyObject | string): { key: KeyObject; keyId: string } {
  if (typeof publicKey !== "string") return { key: publicKey, keyId: signingKeyId(publicKey) };
  return remember(publicKeys, publicKey, () => {
    const key = createPublicKey(publicKey);
    return { key, keyId: signingKeyId(key) };
  });
}

export function signAssignment(assignment: HostAssignment, revision: number, privateKeyPem: string, signedAt = new Date().toISOString()): SignedAssignment {
  const { key: privateKey, keyId } = privateKeyOf(privateKeyPem);
  const signature = sign(null, signedBytes({ assignment, revision, signedAt, keyId }), privateKey).toString("base64");
  return { assignment, revision, signedAt, signature, keyId };
}

/**
 * Decodes an envelope and its assignment (schema and content hash) from the
 * wire; signature and revision are not checked here.
 * @throws DecodeError for anything that is not one: not UTF-8, not JSON,
 * not the envelope's shape, an assignment that does not decode, or one
 * nested too deeply to read.
 */
export function decodeSignedAssignment(source: string, data: Uint8Array | string): UnverifiedEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === "string" ? data : new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (err) {
    throw new DecodeError(source, "", `not JSON: ${(err as Error).message}`);
  }
  return decodeSignedAssignmentValue(source, value);
}

/**
 * decodeSignedAssignment for an envelope already parsed from JSON (e.g.
 * inside a check request). @throws DecodeError, as decodeSignedAssignment.
 */
export function decodeSignedAssignmentValue(source: string, value: unknown): UnverifiedEnvelope {
  const parsed = SignedAssignmentWire.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DecodeError(source, issue.path.join("."), `not a signed assignment envelope: ${issue.message}`);
  }
  let text: string;
  try {
    text = JSON.stringify(parsed.data.assignment);
  } catch (err) {
    // A value nested some ten thousand levels deep parses, but cannot be written back (RangeError: call stack).
    throw new DecodeError(source, "assignment", `not an assignment: nested too deeply to read (${(err as Error).message})`);
  }
  const assignment = decodeAssignment(`${source} assignment`, text);
  return { ...parsed.data, assignment };
}

/**
 * Accepts an envelope only when it is signed, by the given key, for the
 * expected host, and newer than what the agent runs. Each refusal has its
 * own reason and message.
 */
export function verifySignedAssignment(
  envelope: UnverifiedEnvelope,
  publicKey: KeyObject | string,
  currentRevision: number,
  expect?: { site: string; host: string },
): SignedAssignment {
  const { revision } = envelope;
  if (envelope.signature === undefined || envelope.keyId === undefined || envelope.signature === "") {
    throw new AssignmentRejectedError("unsigned", revision, `revision ${revision}: assignment is not signed`);
  }
  const { key, keyId: trusted } = publicKeyOf(publicKey);
  if (envelope.keyId !== trusted) {
    throw new AssignmentRejectedError("unknown-key", revision, `revision ${revision}: signed by unknown key ${envelope.keyId} (trusted: ${trusted})`);
  }
  const ok = verify(null, signedBytes({ ...envelope, keyId: envelope.keyId }), key, Buffer.from(envelope.signature, "base64"));
  if (!ok) throw new AssignmentRejectedError("bad-signature", revision, `revision ${revision}: signature does not verify (forged or altered)`);
  if (expect && (envelope.assignment.site !== expect.site || envelope.assignment.host !== expect.host)) {
    throw new AssignmentRejectedError(
      "wrong-host",
      revision,
      `revision ${revision}: assignment is for ${envelope.assignment.site}/${envelope.assignment.host}, not ${expect.site}/${expect.host}`,
    );
  }
  if (revision <= currentRevision) {
    throw new AssignmentRejectedError("stale-revision", revision, `revision ${revision} is not newer than the current revision ${currentRevision}`);
  }
  return { ...envelope, signature: envelope.signature, keyId: envelope.keyId };
}
