import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { z } from "zod";
import { decodeAssignmentValue, type HostAssignment } from "../assignment.ts";
import { canonicalJson } from "../canonical.ts";
import { DecodeError } from "../errors.ts";
import { parseJson } from "./messages.ts";
import { NETFLEET_RELEASE, PROTOCOL_VERSION, parseFromPeer, senderVersion } from "./version.ts";

/**
 * Assignments travel signed: ed25519 over the canonical JSON (canonical.ts)
 * of the envelope as sent, every field but `signature` (protocol,
 * assignment, revision, signedAt, keyId, and whatever a later minor adds),
 * so neither the document nor its revision can be altered or replayed with
 * a higher number, and an older verifier checks a newer envelope over the
 * fields it does not know too. An envelope signed before versioning (no
 * `protocol`) has the same signed bytes as before. The revision is the
 * controller's per-host counter, independent of KV sequence numbers.
 */
export interface SignedAssignment {
  /** The signer's protocol version (version.ts), signed with the rest; absent on envelopes signed before versioning. */
  protocol?: string;
  assignment: HostAssignment;
  revision: number;
  signedAt: string;
  /**
   * Since 1.1: the netfleet release of the controller that signed it
   * (NETFLEET_RELEASE, e.g. "0.1.0"), so a fleet mid-upgrade shows which
   * controller wrote what each host runs. A 1.0 peer ignores it (and still
   * verifies it: it is signed).
   */
  release?: string;
  signature: string;
  keyId: string;
}

const envelopeShape = {
  protocol: z.string().max(16).optional(),
  assignment: z.unknown(),
  revision: z.number().int().min(1),
  signedAt: z.iso.datetime({ offset: true }),
  release: z.string().regex(/^[0-9A-Za-z.+-]{1,64}$/).optional(),
  signature: z.string().max(200).optional(),
  keyId: z.string().max(64).optional(),
};

/** The envelope's fields, read as strictly as any message from a peer (decodeSignedAssignmentValue). */
const Envelope = z.strictObject(envelopeShape);

/**
 * An envelope as kept (the agent's checkpoint): the known fields, and any a
 * newer minor added, kept because the signature covers them. Only a first
 * look: decodeSignedAssignment checks version, fields and assignment.
 */
export const SignedAssignmentWire = z.looseObject(envelopeShape);

/**
 * An envelope as decoded from the wire: the signature may be missing;
 * `verifySignedAssignment` decides. Its fields are the checked ones (see
 * decodeSignedAssignmentValue); the envelope as received stays behind it
 * for the signature and for JSON.stringify.
 */
export type UnverifiedEnvelope = Omit<SignedAssignment, "signature" | "keyId"> & { signature?: string; keyId?: string };

/**
 * Why the agent will not apply a well-formed envelope (AssignmentRejectedError.reason,
 * the agent's "rejected" log event): "unsigned" no signature or key id;
 * "unknown-key" signed by a key other than the site controller's;
 * "bad-signature" the signature does not verify (forged or altered);
 * "wrong-host" signed for another site or host; "stale-revision" a
 * revision not above the one in force (a replay or an older write).
 */
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

/** The controller's ed25519 key pair (PKCS#8 and SPKI PEM) and its id (signingKeyId). */
export interface SigningKeys {
  keyId: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** A new ed25519 key pair for a site's controller. */
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

/**
 * Gives a decoded envelope the envelope as received, as a non-enumerable
 * `toJSON`: JSON.stringify of the decoded one (the agent's checkpoint, a
 * check request carrying it) writes what was received, so a newer minor's
 * fields stay signed and verifiable; spreading it drops it.
 */
function keepReceived<T extends object>(decoded: T, received: object): T {
  Object.defineProperty(decoded, "toJSON", { value: () => received, enumerable: false });
  return decoded;
}

/** The envelope as received behind a decoded one (keepReceived), else the envelope itself (one being signed, or a copy). */
function asReceived(envelope: object): object {
  const toJSON = (envelope as { toJSON?: unknown }).toJSON;
  return typeof toJSON === "function" ? (toJSON.call(envelope) as object) : envelope;
}

/** What the signature covers: the envelope as sent, without its signature. */
function signedBytes(envelope: object): Buffer {
  const { signature: _signature, ...signed } = asReceived(envelope) as { signature?: string };
  return Buffer.from(canonicalJson(signed));
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

/** The envelope of `assignment` at `revision`, in this peer's protocol version and release, signed with the controller's key (PKCS#8 PEM). */
export function signAssignment(assignment: HostAssignment, revision: number, privateKeyPem: string, signedAt = new Date().toISOString()): SignedAssignment {
  const { key: privateKey, keyId } = privateKeyOf(privateKeyPem);
  const envelope = { protocol: PROTOCOL_VERSION, assignment, revision, signedAt, release: NETFLEET_RELEASE, keyId };
  return { ...envelope, signature: sign(null, signedBytes(envelope), privateKey).toString("base64") };
}

/**
 * Decodes an envelope and its assignment (schema and content hash) from the
 * wire; signature and revision are not checked here.
 * @throws DecodeError for anything that is not one: not UTF-8, not JSON,
 * not the envelope's shape, an assignment that does not decode, or one
 * nested too deeply to read.
 */
export function decodeSignedAssignment(source: string, data: Uint8Array | string): UnverifiedEnvelope {
  return decodeSignedAssignmentValue(source, parseJson(source, data));
}

/**
 * decodeSignedAssignment for an envelope already parsed from JSON (e.g.
 * inside a check request). The result holds zod's checked output: the
 * envelope's known fields, and an assignment with only the fields this
 * code knows, in the schema's order (decodeAssignmentValue), which is what
 * the engine applies. The envelope as received, with any field a newer
 * minor added, stays behind it (a non-enumerable `toJSON`): the signature
 * is checked over it, and JSON.stringify writes it, so the agent keeps and
 * passes on the envelope as signed.
 * @throws ProtocolVersionError for another major; DecodeError, as decodeSignedAssignment.
 */
export function decodeSignedAssignmentValue(source: string, value: unknown): UnverifiedEnvelope {
  const sender = senderVersion(source, "assignment envelope", value);
  const parsed = parseFromPeer(Envelope, value, sender);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DecodeError(source, issue.path.join("."), `not a signed assignment envelope: ${issue.message}`);
  }
  const received = value as UnverifiedEnvelope;
  try {
    JSON.stringify(received.assignment);
  } catch (err) {
    // A value nested some ten thousand levels deep parses, but cannot be written back (RangeError: call stack).
    throw new DecodeError(source, "assignment", `not an assignment: nested too deeply to read (${(err as Error).message})`);
  }
  const assignment = decodeAssignmentValue(`${source} assignment`, received.assignment, sender);
  return keepReceived({ ...(parsed.data as Omit<UnverifiedEnvelope, "assignment">), assignment }, received);
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
  const ok = verify(null, signedBytes(envelope), key, Buffer.from(envelope.signature, "base64"));
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
  return keepReceived({ ...envelope, signature: envelope.signature, keyId: envelope.keyId }, asReceived(envelope));
}
