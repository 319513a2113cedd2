import { sign, verify, type KeyObject } from "node:crypto";
import { z } from "zod";
import { decodeAssignmentValue, type HostAssignment } from "../assignment.ts";
import { DecodeError } from "../errors.ts";
import { parseJson } from "./messages.ts";
import { acceptedKeyIds, isTrustedKeys, trustedKey, type TrustedKeys } from "./signing-chain.ts";
import { asReceived, keepReceived, privateKeyOf, publicKeyOf, signedBytes } from "./signing-keys.ts";
import { NETFLEET_RELEASE, PROTOCOL_VERSION, parseFromPeer, senderVersion } from "./version.ts";

export { generateSigningKeys, signingKeyId, type SigningKeys } from "./signing-keys.ts";
export * from "./signing-chain.ts";

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
  /**
   * Since 1.2: the plan this envelope applies (`netfleet rollout --plan
   * FILE`): `observed` is the sha256 (64 lowercase hex digits) of the
   * host's observed state the plan was made against. An agent that knows it
   * runs the pass that moves the host to this revision with the engine's
   * `expectObserved`, so a host changed since the plan refuses and runs
   * nothing. A 1.1 peer ignores it (and still verifies it: it is signed).
   */
  plan?: { observed: string };
  signature: string;
  keyId: string;
}

const envelopeShape = {
  protocol: z.string().max(16).optional(),
  assignment: z.unknown(),
  revision: z.number().int().min(1),
  signedAt: z.iso.datetime({ offset: true }),
  release: z.string().regex(/^[0-9A-Za-z.+-]{1,64}$/).optional(),
  plan: z.strictObject({ observed: z.string().regex(/^[0-9a-f]{64}$/) }).optional(),
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
 * "retired-key" signed by a controller key the agent no longer accepts (its
 * overlap ended, or a retirement link of the key chain named it: see
 * TrustedKeys);
 * "bad-signature" the signature does not verify (forged or altered);
 * "wrong-host" signed for another site or host; "stale-revision" a
 * revision not above the one in force (a replay or an older write).
 */
export type RejectionReason = "unsigned" | "unknown-key" | "retired-key" | "bad-signature" | "wrong-host" | "stale-revision";

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

/**
 * The envelope of `assignment` at `revision`, in this peer's protocol
 * version and release, signed with the controller's key (PKCS#8 PEM; pure
 * Ed25519, RFC 8032). `extra.plan` (the plan it applies, see
 * SignedAssignment.plan) is put in, and signed, only when given.
 */
export function signAssignment(
  assignment: HostAssignment,
  revision: number,
  privateKeyPem: string,
  signedAt = new Date().toISOString(),
  extra: { plan?: { observed: string } } = {},
): SignedAssignment {
  const { key: privateKey, keyId } = privateKeyOf(privateKeyPem);
  const envelope = { protocol: PROTOCOL_VERSION, assignment, revision, signedAt, release: NETFLEET_RELEASE, ...(extra.plan ? { plan: { observed: extra.plan.observed } } : {}), keyId };
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
 * Accepts an envelope only when it is signed, by the given key (or by a key
 * of the trusted set that is still accepted at `now`, ms since the epoch),
 * for the expected host, and newer than what the agent runs. Each refusal
 * has its own reason and message. Ed25519 as specified in RFC 8032 (pure
 * Ed25519, no prehash: node:crypto sign/verify with a null algorithm).
 * @throws AssignmentRejectedError
 */
export function verifySignedAssignment(
  envelope: UnverifiedEnvelope,
  publicKey: KeyObject | string | TrustedKeys,
  currentRevision: number,
  expect?: { site: string; host: string },
  now = Date.now(),
): SignedAssignment {
  const { revision } = envelope;
  if (envelope.signature === undefined || envelope.keyId === undefined || envelope.signature === "") {
    throw new AssignmentRejectedError("unsigned", revision, `revision ${revision}: assignment is not signed`);
  }
  let key: KeyObject;
  if (isTrustedKeys(publicKey)) {
    const found = trustedKey(publicKey, envelope.keyId, now);
    if (found.kind === "retired") {
      throw new AssignmentRejectedError("retired-key", revision, `revision ${revision}: signed by retired key ${envelope.keyId} (${found.why}; trusted: ${publicKey.active.keyId})`);
    }
    if (found.kind === "unknown") {
      throw new AssignmentRejectedError("unknown-key", revision, `revision ${revision}: signed by unknown key ${envelope.keyId} (trusted: ${acceptedKeyIds(publicKey, now).join(", ")})`);
    }
    key = publicKeyOf(found.publicKeyPem).key;
  } else {
    const parsed = publicKeyOf(publicKey);
    if (envelope.keyId !== parsed.keyId) {
      throw new AssignmentRejectedError("unknown-key", revision, `revision ${revision}: signed by unknown key ${envelope.keyId} (trusted: ${parsed.keyId})`);
    }
    key = parsed.key;
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
