import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from "node:crypto";

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

export function generateBoxKeys(): BoxKeys {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKey: publicKey.export({ type: "spki", format: "der" }).toString("base64"),
  };
}

function boxKey(shared: Buffer, ephemeral: string, recipient: string): Buffer {
  return Buffer.from(hkdfSync("sha256", shared, Buffer.from(ephemeral + recipient), "netfleet-welcome-v1", 32));
}

/** `context` (e.g. site/host) is authenticated but not encrypted: a box opened under another context fails. */
export function seal(recipientPublicKey: string, plaintext: string, context: string): SealedBox {
  const recipient = createPublicKey({ key: Buffer.from(recipientPublicKey, "base64"), format: "der", type: "spki" });
  const eph = generateKeyPairSync("x25519");
  const ephemeralKey = eph.publicKey.export({ type: "spki", format: "der" }).toString("base64");
  const key = boxKey(diffieHellman({ privateKey: eph.privateKey, publicKey: recipient }), ephemeralKey, recipientPublicKey);
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(context));
  const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return { ephemeralKey, iv: iv.toString("base64"), ciphertext: ciphertext.toString("base64"), tag: cipher.getAuthTag().toString("base64") };
}

/** Throws when the box was not sealed to this key or was altered. */
export function open(keys: BoxKeys, box: SealedBox, context: string): string {
  const privateKey = createPrivateKey(keys.privateKeyPem);
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
