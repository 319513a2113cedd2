import { sign, verify } from "node:crypto";
import { z } from "zod";
import { DecodeError } from "../errors.ts";
import { parseJson } from "./messages.ts";
import { keepReceived, privateKeyOf, publicKeyOf, signedBytes, signingKeyId } from "./signing-keys.ts";
import { PROTOCOL_VERSION, parseFromPeer, senderVersion } from "./version.ts";

// ---------------------------------------------------------------------------
// Rotation of the controller's signing key: a chain of key announcements.
// ---------------------------------------------------------------------------

/**
 * The key of the desired bucket (`nf_<site>_desired`) that holds the
 * site's signing-key chain (SigningChain). Not a DNS label, so no host can
 * be named that; agents may read it (a direct get), only the controller writes it.
 */
export const SIGNING_CHAIN_KEY = "_signing";

/** At most this many links in a chain (a rotation a day for most of a year); a longer one is refused whole. */
export const SIGNING_CHAIN_MAX_LINKS = 256;

/** At most this many earlier keys an agent keeps accepting at once (each until its `notAfter`). */
const MAX_PREVIOUS_KEYS = 8;

const KEY_ID = /^[0-9a-f]{16}$/;

const announcementShape = {
  protocol: z.string().max(16).optional(),
  kind: z.literal("signing-key"),
  site: z.string().max(63),
  seq: z.number().int().min(1).max(SIGNING_CHAIN_MAX_LINKS),
  keyId: z.string().regex(KEY_ID),
  publicKeyPem: z.string().max(1024),
  previousKeyId: z.string().regex(KEY_ID),
  previousNotAfter: z.iso.datetime({ offset: true }),
  issuedAt: z.iso.datetime({ offset: true }),
  signerKeyId: z.string().regex(KEY_ID),
  signature: z.string().max(200),
};
const Announcement = z.strictObject(announcementShape);
const Chain = z.strictObject({
  protocol: z.string().max(16).optional(),
  kind: z.literal("signing-chain"),
  site: z.string().max(63),
  links: z.array(z.unknown()).max(SIGNING_CHAIN_MAX_LINKS),
});

/**
 * One link of the controller's signing-key chain, signed (Ed25519, RFC 8032)
 * by the key in force before it, `signerKeyId`, over the canonical JSON of
 * the link as sent without its `signature` (as assignments are). Two kinds:
 * - a rotation (`keyId` is a new key, `previousKeyId` = `signerKeyId`):
 *   from this link on `keyId` signs; the previous key's signatures are still
 *   accepted until `previousNotAfter` (the overlap), by the agent's clock;
 * - a retirement (`keyId` = `signerKeyId`, the key in force, restated):
 *   `previousKeyId` is refused from this link on, whatever its `notAfter`.
 * `seq` is the link's position (1 = the first rotation after the key the
 * site started with). A new document kind of protocol 1.x, in a KV key no
 * 1.x agent before it reads: additive.
 */
export interface KeyAnnouncement {
  protocol?: string;
  kind: "signing-key";
  site: string;
  seq: number;
  keyId: string;
  publicKeyPem: string;
  previousKeyId: string;
  previousNotAfter: string;
  issuedAt: string;
  signerKeyId: string;
  signature: string;
}

/** The value of SIGNING_CHAIN_KEY: every link since the site's first key, oldest first. The links are signed; the list is not. */
export interface SigningChain {
  protocol?: string;
  kind: "signing-chain";
  site: string;
  links: KeyAnnouncement[];
}

/**
 * The controller keys an agent accepts (kept in its run dir): `active`, the
 * key the controller signs with now, and earlier keys still accepted, each
 * until `notAfter` (ISO date-time, the agent's clock). `seq` is the chain
 * link `active` was learned from (0: the key pinned at enrollment, before
 * any link was read).
 */
export interface TrustedKeys {
  seq: number;
  active: { keyId: string; publicKeyPem: string };
  previous: { keyId: string; publicKeyPem: string; notAfter: string }[];
}

/** The file shape of TrustedKeys (agent state); a pinned PEM's key id is checked when it is made (trustPinned). */
export const TrustedKeysFile = z.strictObject({
  seq: z.number().int().min(0).max(SIGNING_CHAIN_MAX_LINKS),
  active: z.strictObject({ keyId: z.string().regex(KEY_ID), publicKeyPem: z.string().max(1024) }),
  previous: z.array(z.strictObject({ keyId: z.string().regex(KEY_ID), publicKeyPem: z.string().max(1024), notAfter: z.iso.datetime({ offset: true }) })).max(MAX_PREVIOUS_KEYS),
});

/** The trust an agent starts from: the key pinned at enrollment (the welcome's, or --signing-key), nothing learned yet. */
export function trustPinned(publicKeyPem: string): TrustedKeys {
  return { seq: 0, active: { keyId: publicKeyOf(publicKeyPem).keyId, publicKeyPem }, previous: [] };
}

/** Whether a verification key argument is a trusted set (TrustedKeys) rather than one key (signing.ts verifySignedAssignment). */
export function isTrustedKeys(value: unknown): value is TrustedKeys {
  return typeof value === "object" && value !== null && "active" in value && "previous" in value && "seq" in value;
}

/** What a key id is to a trusted set at `now`: accepted (with its PEM), retired (an earlier key past its overlap), or unknown. */
export function trustedKey(trust: TrustedKeys, keyId: string, now: number): { kind: "accepted"; publicKeyPem: string } | { kind: "retired"; why: string } | { kind: "unknown" } {
  if (trust.active.keyId === keyId) return { kind: "accepted", publicKeyPem: trust.active.publicKeyPem };
  const earlier = trust.previous.find((p) => p.keyId === keyId);
  if (!earlier) return { kind: "unknown" };
  if (Date.parse(earlier.notAfter) > now) return { kind: "accepted", publicKeyPem: earlier.publicKeyPem };
  return { kind: "retired", why: `its overlap ended ${earlier.notAfter}` };
}

/** The key ids a trusted set accepts at `now` (ms), active first. */
export function acceptedKeyIds(trust: TrustedKeys, now = Date.now()): string[] {
  return [trust.active.keyId, ...trust.previous.filter((p) => Date.parse(p.notAfter) > now).map((p) => p.keyId)];
}

/**
 * A new link signed with `signerPrivateKeyPem` (PKCS#8 PEM of the key in
 * force): a rotation to `next` when its key id differs from the signer's,
 * a retirement of `previousKeyId` when `next` is the signer's own key.
 * @throws Error when a rotation does not replace the signer (previousKeyId), or `next`'s id does not match its key.
 */
export function signKeyAnnouncement(
  link: { site: string; seq: number; next: { keyId: string; publicKeyPem: string }; previousKeyId: string; previousNotAfter: string },
  signerPrivateKeyPem: string,
  issuedAt = new Date().toISOString(),
): KeyAnnouncement {
  const { key: privateKey, keyId: signerKeyId } = privateKeyOf(signerPrivateKeyPem);
  if (publicKeyOf(link.next.publicKeyPem).keyId !== link.next.keyId) throw new Error(`key id ${link.next.keyId} does not match its public key`);
  if (link.next.keyId !== signerKeyId && link.previousKeyId !== signerKeyId) throw new Error(`a rotation is signed by the key it replaces (${link.previousKeyId}), not ${signerKeyId}`);
  const body = {
    protocol: PROTOCOL_VERSION,
    kind: "signing-key" as const,
    site: link.site,
    seq: link.seq,
    keyId: link.next.keyId,
    publicKeyPem: link.next.publicKeyPem,
    previousKeyId: link.previousKeyId,
    previousNotAfter: link.previousNotAfter,
    issuedAt,
    signerKeyId,
  };
  return { ...body, signature: sign(null, signedBytes(body), privateKey).toString("base64") };
}

/**
 * Decodes the chain document of SIGNING_CHAIN_KEY. Its links are checked
 * for shape only here (followChain verifies them); each keeps the link as
 * received behind it (keepReceived), so a newer minor's fields stay signed.
 * @throws DecodeError (ProtocolVersionError for another major) for anything that is not a chain.
 */
export function decodeSigningChain(source: string, data: Uint8Array | string): SigningChain {
  const value = parseJson(source, data);
  const sender = senderVersion(source, "signing-chain", value);
  const parsed = parseFromPeer(Chain, value, sender);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DecodeError(source, issue.path.join("."), `not a signing-key chain: ${issue.message}`);
  }
  const links = parsed.data.links.map((raw, i) => {
    const linkSender = senderVersion(`${source} links.${i}`, "signing-key", raw);
    const link = parseFromPeer(Announcement, raw, linkSender);
    if (!link.success) {
      const issue = link.error.issues[0]!;
      throw new DecodeError(source, ["links", i, ...issue.path].join("."), `not a key announcement: ${issue.message}`);
    }
    return keepReceived({ ...link.data } as KeyAnnouncement, raw as object);
  });
  return { ...(parsed.data.protocol ? { protocol: parsed.data.protocol } : {}), kind: "signing-chain", site: parsed.data.site, links };
}

/** Why a chain link was not followed: see followChain. */
export type ChainRefusal = "wrong-site" | "out-of-order" | "fork" | "unknown-signer" | "bad-signature" | "bad-key";

/** What following a chain gave: the trusted set after it, the links newly followed, and the first link refused, if any (nothing after it is followed). */
export interface ChainResult {
  trust: TrustedKeys;
  followed: KeyAnnouncement[];
  refused?: { seq: number; reason: ChainRefusal; message: string };
}

/**
 * Follows the chain from the trusted set: every link after the one the set
 * was learned from (after the link that introduced its active key, for a
 * set that only holds the pinned key) must be signed by the key in force
 * before it (RFC 8032 Ed25519 over the link's canonical JSON) and name
 * `site`; a rotation makes its key active and keeps the replaced one until
 * `previousNotAfter`, a retirement drops the key it names at once. The
 * first link that fails stops the walk: what was followed before it is kept,
 * the rest is refused with the reason ("unknown-signer": signed by a key the
 * agent does not hold in force, e.g. a forged announcement; "bad-signature";
 * "fork": the link the agent learned from differs; "out-of-order"; "bad-key";
 * "wrong-site"). Earlier keys stay listed past their `notAfter` (refused
 * then, verifySignedAssignment's "retired-key"), at most the last 8.
 * Never throws for a chain's content.
 */
export function followChain(trust: TrustedKeys, chain: SigningChain, site: string): ChainResult {
  let current: TrustedKeys = { seq: trust.seq, active: { ...trust.active }, previous: [...trust.previous] };
  const followed: KeyAnnouncement[] = [];
  const links = chain.links;
  const refuse = (seq: number, reason: ChainRefusal, message: string): ChainResult => ({ trust: current, followed, refused: { seq, reason, message } });
  if (chain.site !== site) return refuse(0, "wrong-site", `the chain is for site ${chain.site}, not ${site}`);
  const misplaced = links.findIndex((l, i) => l.seq !== i + 1);
  if (misplaced >= 0) return refuse(links[misplaced]!.seq, "out-of-order", `link ${misplaced + 1} says seq ${links[misplaced]!.seq}`);
  let start: number;
  if (current.seq > 0) {
    if (links.length < current.seq) return refuse(current.seq, "fork", `the chain has ${links.length} links; this agent learned key ${current.active.keyId} from link ${current.seq}`);
    if (links[current.seq - 1]!.keyId !== current.active.keyId) return refuse(current.seq, "fork", `link ${current.seq} names key ${links[current.seq - 1]!.keyId}; this agent learned ${current.active.keyId} there`);
    start = current.seq;
  } else {
    // Pinned only: start after the last link that names the pinned key (none: the pinned key is the site's first).
    let last = -1;
    links.forEach((l, i) => {
      if (l.keyId === current.active.keyId) last = i;
    });
    start = last + 1;
    if (last >= 0) current = { ...current, seq: last + 1 };
  }
  for (const link of links.slice(start)) {
    const signer = current.active;
    if (link.site !== site) return refuse(link.seq, "wrong-site", `link ${link.seq} is for site ${link.site}, not ${site}`);
    if (link.signerKeyId !== signer.keyId) {
      return refuse(link.seq, "unknown-signer", `link ${link.seq} (key ${link.keyId}) is signed by ${link.signerKeyId}, not by the key in force ${signer.keyId}`);
    }
    if (!verify(null, signedBytes(link), publicKeyOf(signer.publicKeyPem).key, Buffer.from(link.signature, "base64"))) {
      return refuse(link.seq, "bad-signature", `link ${link.seq} (key ${link.keyId}): signature does not verify (forged or altered)`);
    }
    let announcedId: string;
    try {
      announcedId = signingKeyId(link.publicKeyPem);
    } catch (err) {
      return refuse(link.seq, "bad-key", `link ${link.seq}: public key does not parse (${(err as Error).message})`);
    }
    if (announcedId !== link.keyId) return refuse(link.seq, "bad-key", `link ${link.seq}: key id ${link.keyId} does not match its public key (${announcedId})`);
    if (link.keyId === signer.keyId) {
      current = { ...current, seq: link.seq, previous: current.previous.filter((p) => p.keyId !== link.previousKeyId) };
    } else {
      if (link.previousKeyId !== signer.keyId) return refuse(link.seq, "bad-key", `link ${link.seq} replaces ${link.previousKeyId}, not the key in force ${signer.keyId}`);
      const kept = current.previous.filter((p) => p.keyId !== link.keyId && p.keyId !== signer.keyId);
      // Kept past its notAfter too (refused then, as "retired-key"), the oldest dropped beyond MAX_PREVIOUS_KEYS.
      const previous = [...kept, { ...signer, notAfter: link.previousNotAfter }];
      current = { seq: link.seq, active: { keyId: link.keyId, publicKeyPem: link.publicKeyPem }, previous: previous.slice(-MAX_PREVIOUS_KEYS) };
    }
    followed.push(link);
  }
  return { trust: current, followed };
}
