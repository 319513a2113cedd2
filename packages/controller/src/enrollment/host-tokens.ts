import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { constants } from "node:fs";
import { link, mkdir, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { DNS_LABEL, formatHostToken, hostTokenMacInput, parseHostToken } from "@netfleet/shared";

/** How long a minted host token is accepted by default: 24 h, ms. */
export const HOST_TOKEN_DEFAULT_TTL_MS = 24 * 3600 * 1000;
/**
 * The longest a host token may live: 30 days, ms. The used-token bucket
 * keeps a nonce this long (its max_age, buckets.ts), so a used token is
 * refused until it has expired anyway.
 */
export const HOST_TOKEN_MAX_TTL_MS = 30 * 24 * 3600 * 1000;

/** The file under the credentials dir holding the HMAC key host tokens are minted with (32 random bytes, base64url; 0600). */
export const HOST_TOKEN_KEY_FILE = ".host-token.key";

/**
 * The key host tokens are minted and checked with, from
 * `<credentialsDir>/.host-token.key`; made on first use (32 random bytes,
 * mode 0600, its folder 0700; written to an exclusive temp file and
 * link(2)ed into place), so two processes racing to make it end up with
 * the same one and none reads half of it. Only the controller user can
 * read it: the credentials dir is 0700.
 * @throws Error when the file cannot be read or made, or holds no key.
 */
export async function hostTokenKey(credentialsDir: string): Promise<Buffer> {
  const file = join(credentialsDir, HOST_TOKEN_KEY_FILE);
  const read = async () => {
    // O_NOFOLLOW: a symlink planted where the key goes is refused (ELOOP), never read through.
    const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const text = await fh.readFile("utf8").finally(() => fh.close());
    const trimmed = text.trim();
    const key = Buffer.from(trimmed, "base64url");
    if (key.length < 32) throw new Error(`${file}: holds no host-token key (delete it to make a new one; tokens minted before stop working)`);
    return key;
  };
  try {
    return await read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(credentialsDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  // Written whole to a temp file of our own ("wx": O_CREAT|O_EXCL, never through a link), then link(2)ed into place:
  // link fails with EEXIST when the key exists (a planted symlink included) and never shows a half-written file.
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(`${key.toString("base64url")}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await link(tmp, file);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return await read();
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** What a host token is minted for. */
export interface MintHostTokenOptions {
  /** The site (DNS label): the MAC covers it, so a token of one site is refused by another. */
  site: string;
  /** NATS password of the site's enrollment user (secrets.json `enrollment.enrollPassword`): the agent connects with it. */
  enrollPassword: string;
  /** The inventory host (DNS label) the token enrolls; the agent must enroll under this name. */
  host: string;
  /** How long it is accepted, ms (default HOST_TOKEN_DEFAULT_TTL_MS; at most HOST_TOKEN_MAX_TTL_MS). */
  ttlMs?: number;
  /** Now, ms since the epoch (default Date.now()). */
  now?: number;
}

/**
 * A host token (`nfh1.<id>.<host>.<expiry>.<nonce>.<mac>`, see JoinToken in
 * @netfleet/shared) minted with `key` (hostTokenKey): it approves `host`
 * once, until `now + ttlMs`. Nothing is stored: the controller checks the
 * MAC and expiry, and records the nonce as used when it approves.
 * @throws Error when the host or site is not a DNS label or the ttl is not in (0, 30 d].
 */
export function mintHostTokenWithKey(key: Buffer, o: MintHostTokenOptions): { token: string; expiresAt: Date } {
  if (!DNS_LABEL.test(o.host)) throw new Error(`host ${JSON.stringify(o.host)} is not a DNS label`);
  if (!DNS_LABEL.test(o.site)) throw new Error(`site ${JSON.stringify(o.site)} is not a DNS label`);
  const ttl = o.ttlMs ?? HOST_TOKEN_DEFAULT_TTL_MS;
  if (!(ttl > 0 && ttl <= HOST_TOKEN_MAX_TTL_MS)) throw new Error(`a host token lives between 1 s and 30 days (asked: ${ttl} ms)`);
  const expiresAt = Math.ceil(((o.now ?? Date.now()) + ttl) / 1000);
  const nonce = randomBytes(12).toString("base64url");
  const mac = hostTokenMac(key, o.site, o.host, expiresAt, nonce);
  return { token: formatHostToken({ enrollPassword: o.enrollPassword, host: o.host, expiresAt, nonce, mac }), expiresAt: new Date(expiresAt * 1000) };
}

/**
 * Mints a host token for bootstrap and images (see mintHostTokenWithKey),
 * with the key kept in the controller's credentials dir
 * (`ControllerHome.credentialsDir`), made there on first use. Needs no
 * running `netfleet serve`: the controller checks the token when the agent enrolls.
 * @throws Error as hostTokenKey and mintHostTokenWithKey do.
 */
export async function mintHostToken(credentialsDir: string, o: MintHostTokenOptions): Promise<{ token: string; expiresAt: Date }> {
  return mintHostTokenWithKey(await hostTokenKey(credentialsDir), o);
}

function hostTokenMac(key: Buffer, site: string, host: string, expiresAt: number, nonce: string): string {
  return createHmac("sha256", key).update(hostTokenMacInput(site, host, expiresAt, nonce)).digest("base64url");
}

/** A host token that checked out: the host it enrolls and its nonce (recorded as used on approval). */
export interface VerifiedHostToken {
  host: string;
  nonce: string;
  expiresAt: number;
}

/**
 * Checks a presented host token: its form, its MAC (constant-time), its
 * expiry. Returns the verified parts, or the reason it is refused. The
 * caller still checks that the host is the one enrolling and that the
 * nonce was not used.
 */
export function verifyHostToken(key: Buffer, site: string, token: string, nowMs = Date.now()): { ok: true; token: VerifiedHostToken } | { ok: false; reason: string } {
  const p = parseHostToken(token);
  if (!p) return { ok: false, reason: "not a host token" };
  const want = Buffer.from(hostTokenMac(key, site, p.host, p.expiresAt, p.nonce), "base64url");
  const got = Buffer.from(p.mac, "base64url");
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, reason: "host token not minted by this controller (bad MAC)" };
  if (p.expiresAt * 1000 <= nowMs) return { ok: false, reason: `host token expired at ${new Date(p.expiresAt * 1000).toISOString()}` };
  return { ok: true, token: { host: p.host, nonce: p.nonce, expiresAt: p.expiresAt } };
}
