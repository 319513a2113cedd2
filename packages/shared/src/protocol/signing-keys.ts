import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { canonicalJson } from "../canonical.ts";

/*
 * Ed25519 keys (RFC 8032) and the one rule of what a signature covers, shared
 * by the signed assignment envelope (signing.ts) and the signing-key chain
 * (signing-chain.ts). keepReceived/asReceived/signedBytes/privateKeyOf/
 * publicKeyOf are internal to the protocol folder: index.ts does not export them.
 */

/** The controller's ed25519 key pair (PKCS#8 and SPKI PEM) and its id (signingKeyId). */
export interface SigningKeys {
  keyId: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** A new Ed25519 key pair (RFC 8032; node:crypto generateKeyPairSync("ed25519")) for a site's controller. */
export function generateSigningKeys(): SigningKeys {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    keyId: signingKeyId(publicKey),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/**
 * First 16 hex digits of the sha256 of the public key (SPKI DER). A PEM is
 * parsed once per process (publicKeyOf's cache, keyed by the PEM text
 * itself, so another key is never answered from it): every agent builds its
 * trust from the pinned PEM (fleet/desired.ts SigningTrust), and parsing and
 * exporting the key cost more than a signature check (issue 18: 0.57 s per
 * 5,000 agents in one process).
 * @throws the node:crypto error for a PEM that is not a public key.
 */
export function signingKeyId(publicKey: KeyObject | string): string {
  if (typeof publicKey === "string") return publicKeyOf(publicKey).keyId;
  return createHash("sha256").update(publicKey.export({ type: "spki", format: "der" })).digest("hex").slice(0, 16);
}

/**
 * Gives a decoded envelope the envelope as received, as a non-enumerable
 * `toJSON`: JSON.stringify of the decoded one (the agent's checkpoint, a
 * check request carrying it) writes what was received, so a newer minor's
 * fields stay signed and verifiable; spreading it drops it.
 */
export function keepReceived<T extends object>(decoded: T, received: object): T {
  Object.defineProperty(decoded, "toJSON", { value: () => received, enumerable: false });
  return decoded;
}

/** The envelope as received behind a decoded one (keepReceived), else the envelope itself (one being signed, or a copy). */
export function asReceived(envelope: object): object {
  const toJSON = (envelope as { toJSON?: unknown }).toJSON;
  return typeof toJSON === "function" ? (toJSON.call(envelope) as object) : envelope;
}

/** What the signature covers: the envelope as sent, without its signature. */
export function signedBytes(envelope: object): Buffer {
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

export function privateKeyOf(pem: string): { key: KeyObject; keyId: string } {
  return remember(privateKeys, pem, () => {
    const key = createPrivateKey(pem);
    return { key, keyId: signingKeyId(createPublicKey(key)) };
  });
}

export function publicKeyOf(publicKey: KeyObject | string): { key: KeyObject; keyId: string } {
  if (typeof publicKey !== "string") return { key: publicKey, keyId: signingKeyId(publicKey) };
  return remember(publicKeys, publicKey, () => {
    const key = createPublicKey(publicKey);
    return { key, keyId: signingKeyId(key) };
  });
}
