import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from "node:crypto";

/**
 * Encryption to an X25519 public key (ephemeral ECDH, HKDF-SHA256,
 * AES-256-GCM): how the controller hands credentials to an enrolling agent
 * over a subject other enrolling agents can read too.
 */
export interface SealedBox {
  ephemeralKey: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

export interface BoxKeys {
  privateKeyPem: string;
  /** SPKI DER, base64: what goes into the enroll facts. */
  publicKey: string;
}

/**
 * The DER prefix of an X25519 SubjectPublicKeyInfo (RFC 8410 section 4:
 * SEQUENCE { SEQUENCE { OID 1.3.101.110 id-X25519 }, BIT STRING of the
 * 32-byte key }): 12 bytes, the same for every key, followed by the key.
 */
const X25519_SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

/**
 * An X25519 public key as SPKI DER, base64 (44 bytes of DER): the same bytes
 * as `export({ type: "spki", format: "der" })`, built from the raw key of its
 * JWK (RFC 8037 section 2: `x`, base64url), which node:crypto exports some
 * 20 times faster than the DER (about 1 us against 21 us here: one per
 * enrollment on the agent, one per welcome sealed on the controller).
 */
function x25519SpkiBase64(publicKey: KeyObject): string {
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  return Buffer.concat([X25519_SPKI_PREFIX, raw]).toString("base64");
}

/** The parsed private key behind each BoxKeys made or opened here: parsing its PEM costs more than the key agreement. */
const privateKeyObjects = new WeakMap<BoxKeys, KeyObject>();

/**
 * A fresh X25519 key pair: the private key as PKCS#8 PEM, the public key as
 * SPKI DER in base64 (what enroll facts carry). The returned object also
 * remembers the parsed private key, so `open` with it parses no PEM.
 */
export function generateBoxKeys(): BoxKeys {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const keys = {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKey: x25519SpkiBase64(publicKey),
  };
  privateKeyObjects.set(keys, privateKey);
  return keys;
}

function boxKey(shared: Buffer, ephemeral: string, recipient: string): Buffer {
  return Buffer.from(hkdfSync("sha256", shared, Buffer.from(ephemeral + recipient), "netfleet-welcome-v1", 32));
}

/** `context` (e.g. site/host) is authenticated but not encrypted: a box opened under another context fails. */
export function seal(recipientPublicKey: string, plaintext: string, context: string): SealedBox {
  const recipient = createPublicKey({ key: Buffer.from(recipientPublicKey, "base64"), format: "der", type: "spki" });
  const eph = generateKeyPairSync("x25519");
  const ephemeralKey = x25519SpkiBase64(eph.publicKey);
  const key = boxKey(diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }), ephemeralKey, recipientPublicKey);
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(context));
  const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return { ephemeralKey, iv: iv.toString("base64"), ciphertext: ciphertext.toString("base64"), tag: cipher.getAuthTag().toString("base64") };
}

/**
 * Opens a box sealed to `keys` (its private key is parsed once per BoxKeys
 * object and remembered: keep the object to open again cheaply).
 * Throws when the box was not sealed to this key or was altered.
 */
export function open(keys: BoxKeys, box: SealedBox, context: string): string {
  let privateKey = privateKeyObjects.get(keys);
  if (!privateKey) privateKeyObjects.set(keys, (privateKey = createPrivateKey(keys.privateKeyPem)));
  const ephemeral = createPublicKey({ key: Buffer.from(box.ephemeralKey, "base64"), format: "der", type: "spki" });
  const key = boxKey(diffieHellman({ privateKey, publicKey: ephemeral }), box.ephemeralKey, keys.publicKey);
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(box.iv, "base64"));
  decipher.setAAD(Buffer.from(context));
  decipher.setAuthTag(Buffer.from(box.tag, "base64"));
  return Buffer.concat([decipher.update(Buffer.from(box.ciphertext, "base64")), decipher.final()]).toString("utf8");
}

/** Authenticated context of a welcome: it opens only for this site and claimed name. */
export function welcomeContext(site: string, claimedName: string): string {
  return `netfleet welcome ${site}/${claimedName}`;
}
