import { randomBytes } from "node:crypto";

/**
 * The join token an operator hands to agents: `<id>.<secret>`, like a
 * kubeadm bootstrap token. The id is the NATS password of the site's shared
 * enrollment user (it lets a host publish its facts and hear sealed
 * welcomes, nothing else); the whole token, presented in the facts, is what
 * gets a host approved without an operator. A host that knows the id but not
 * the secret can enroll and is quarantined.
 */
export interface JoinToken {
  /** NATS password of the enrollment user. */
  enrollPassword: string;
  /** The full token, compared by the controller. */
  token: string;
}

const TOKEN = /^([A-Za-z0-9_-]{8,64})\.([A-Za-z0-9_-]{16,256})$/;

/**
 * A fresh token: a 12-character id and a 32-character secret, base64url of
 * 9 and 24 random bytes. The id never begins with `-`: a token is handed
 * around on command lines (`netfleet bootstrap --token <t>`), and a leading
 * dash makes argument parsers read it as an option (1 token in 64 did).
 */
export function newJoinToken(): JoinToken {
  let id = randomBytes(9).toString("base64url");
  // Bounded: each draw starts with "-" with probability 1/64.
  for (let i = 0; i < 16 && id.startsWith("-"); i++) id = randomBytes(9).toString("base64url");
  if (id.startsWith("-")) id = `A${id.slice(1)}`;
  const secret = randomBytes(24).toString("base64url");
  return { enrollPassword: id, token: `${id}.${secret}` };
}

/** Splits a join token; throws with a readable message when it is not one. */
export function parseJoinToken(token: string): JoinToken {
  const m = TOKEN.exec(token.trim());
  if (!m) throw new Error("a join token looks like <id>.<secret> (netfleet token prints the site's)");
  return { enrollPassword: m[1]!, token: token.trim() };
}
