import { randomBytes } from "node:crypto";
import { DNS_LABEL } from "../names.ts";

/**
 * What an agent enrolls with. Two forms:
 *
 * - the site's join token `<id>.<secret>`, like a kubeadm bootstrap token:
 *   the id is the NATS password of the site's shared enrollment user (it
 *   lets a host publish its facts and hear sealed welcomes, nothing else);
 *   the whole token, presented in the facts, lets a host *ask* to join: it is
 *   kept as a pending claim (quarantined) until an operator approves it.
 *   Every enrolled host holds it, so it never approves anything by itself.
 * - a host token `nfh1.<id>.<host>.<expiry>.<nonce>.<mac>` minted by the
 *   controller (`netfleet hosts token HOST`, bootstrap): the same enrollment
 *   id, then the one inventory host it is for, its expiry (Unix seconds,
 *   base 36), a random nonce and an HMAC-SHA256 of those by a key only the
 *   controller holds. It approves that host once, before it expires.
 */
export interface JoinToken {
  /** NATS password of the enrollment user. */
  enrollPassword: string;
  /** The full token, presented in the facts and checked by the controller. */
  token: string;
  /** Set for a host token: the inventory host it enrolls (the agent's name must be this). */
  host?: string;
  /** Set for a host token: when it stops being accepted (Unix seconds). */
  expiresAt?: number;
}

const TOKEN = /^([A-Za-z0-9_-]{8,64})\.([A-Za-z0-9_-]{16,256})$/;

/** The version tag a host token starts with. */
export const HOST_TOKEN_PREFIX = "nfh1";

const HOST_TOKEN = /^nfh1\.([A-Za-z0-9_-]{8,64})\.([a-z0-9-]{1,63})\.([0-9a-z]{1,11})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$/;

/** The parts of a host token, as parsed (nothing verified: the controller checks the MAC and the expiry). */
export interface HostTokenParts {
  enrollPassword: string;
  host: string;
  /** Unix seconds. */
  expiresAt: number;
  nonce: string;
  /** base64url of the 32-byte HMAC-SHA256. */
  mac: string;
}

/**
 * The parts of a host token (`nfh1.<id>.<host>.<expiry>.<nonce>.<mac>`), or
 * undefined when `token` is not one (a site join token, junk).
 */
export function parseHostToken(token: string): HostTokenParts | undefined {
  const m = HOST_TOKEN.exec(token.trim());
  if (!m || !DNS_LABEL.test(m[2]!)) return undefined;
  const expiresAt = parseInt(m[3]!, 36);
  if (!Number.isSafeInteger(expiresAt)) return undefined;
  return { enrollPassword: m[1]!, host: m[2]!, expiresAt, nonce: m[4]!, mac: m[5]! };
}

/** The text a host token's MAC is computed over: version, site, host, expiry (base 36) and nonce, one a line. */
export function hostTokenMacInput(site: string, host: string, expiresAt: number, nonce: string): string {
  return [HOST_TOKEN_PREFIX, site, host, expiresAt.toString(36), nonce].join("\n");
}

/** A host token from its parts (the MAC computed by the controller, base64url). */
export function formatHostToken(p: HostTokenParts): string {
  return [HOST_TOKEN_PREFIX, p.enrollPassword, p.host, p.expiresAt.toString(36), p.nonce, p.mac].join(".");
}

/**
 * A fresh token: a 12-character id and a 32-character secret, base64url of
 * 9 and 24 random bytes. The id never begins with `-`: tokens travel in
 * files and on stdin (`--token-file FILE|-`), but a pasted one may still
 * land in argv by hand, and a leading dash makes argument parsers read it
 * as an option (1 token in 64 did).
 */
export function newJoinToken(): JoinToken {
  let id = randomBytes(9).toString("base64url");
  // Bounded: each draw starts with "-" with probability 1/64.
  for (let i = 0; i < 16 && id.startsWith("-"); i++) id = randomBytes(9).toString("base64url");
  if (id.startsWith("-")) id = `A${id.slice(1)}`;
  const secret = randomBytes(24).toString("base64url");
  return { enrollPassword: id, token: `${id}.${secret}` };
}

/**
 * Splits a join token or a host token (see JoinToken); a host token also
 * gives `host` and `expiresAt`. Throws with a readable message when it is neither.
 */
export function parseJoinToken(token: string): JoinToken {
  const t = token.trim();
  const host = parseHostToken(t);
  if (host) return { enrollPassword: host.enrollPassword, token: t, host: host.host, expiresAt: host.expiresAt };
  const m = TOKEN.exec(t);
  if (!m) throw new Error("a join token looks like <id>.<secret> (netfleet token prints the site's) or nfh1.<id>.<host>.… (netfleet hosts token HOST mints one)");
  return { enrollPassword: m[1]!, token: t };
}
