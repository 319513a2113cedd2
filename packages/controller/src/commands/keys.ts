import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { SIGNING_CHAIN_MAX_LINKS, generateSigningKeys, signKeyAnnouncement, type KeyAnnouncement } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import type { CommandOutput } from "../output.ts";
import type { ResignResult } from "../store/desired.ts";
import type { ControllerHome, ControllerSecrets } from "../store/home.ts";
import { StateDirLock, StateDirLockedError } from "../store/lock.ts";

/** The keys commands' lock file in the state dir (withKeysLock). */
export const KEYS_LOCK_FILE = "keys.lock";

/** Default overlap of `netfleet keys rotate` and `rotate-enrollment`: agents accept the old key (hosts the old token) this long. */
export const DEFAULT_OVERLAP_MS = 24 * 3600_000;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/**
 * An overlap: a whole number and a unit (90s, 15m, 24h, 7d), from 0 (the
 * old key refused at once) to 365 days; in milliseconds.
 * @throws Error naming --overlap and the accepted forms.
 */
export function parseOverlap(text: string): number {
  const m = /^(\d{1,6})([smhd])$/.exec(text.trim());
  const ms = m ? Number(m[1]) * UNITS[m[2]!]! : NaN;
  if (!(ms >= 0 && ms <= 365 * UNITS.d!)) throw new Error(`--overlap takes a duration like 90s, 15m, 24h or 7d (at most 365d), not ${JSON.stringify(text.slice(0, 40))}`);
  return ms;
}

/** A rollout holds the lock: keys are not switched under it (it signs with the key it loaded at its start). */
export class RolloutRunningError extends Error {
  constructor(owner: string, since: string) {
    super(`a rollout holds the lock (${owner}, since ${since}): rotate or retire keys after it ends`);
    this.name = "RolloutRunningError";
  }
}

/** What a rotation or retirement did. */
export interface KeyChange {
  site: string;
  /** The key that signs from now on. */
  keyId: string;
  /** Rotation: the key replaced, and until when agents still accept it. Retirement: the keys refused from now on. */
  previous: { keyId: string; notAfter: string }[];
  /** The chain links written by this command. */
  links: KeyAnnouncement[];
  /** The chain's length and KV revision after the write. */
  chainLength: number;
  chainRevision: number;
  /** Every desired entry that was signed by another key, re-signed (or why not). */
  resigned: ResignResult[];
}

/** Another keys command holds the state dir's keys.lock (flock(2)). */
export class KeysBusyError extends Error {
  constructor(file: string, holder: string) {
    super(`${file}: another netfleet keys command is running (${holder}); try again when it has ended`);
    this.name = "KeysBusyError";
  }
}

/**
 * Runs `work` holding an exclusive flock(2) on `<state-dir>/keys.lock`: two
 * keys commands changing secrets.json and the published chain at once would
 * each sign a link n+1, and agents could follow a key whose private half the
 * other overwrote. Serve's StateDirLock (store/lock.ts) on another file: the file is
 * made empty, 0600, never through a link (writeOwned), opened O_NOFOLLOW,
 * and locked with util-linux's `flock --exclusive --nonblock 3` on our open
 * file as its fd 3 (Node has no flock()); flock(2): the lock belongs to the
 * open file description and is released when it is closed, also when the
 * process dies (SIGKILL included): no stale lock, no takeover race. The
 * file stays; only the lock comes and goes. It is a lock of its own, not
 * serve.lock, which a running serve holds while keys commands run beside it.
 * @throws KeysBusyError naming the processes that hold it (/proc/PID/fd);
 *   DiskFullError when the file cannot be made for lack of space.
 */
async function withKeysLock<T>(home: ControllerHome, work: () => Promise<T>): Promise<T> {
  let lock: StateDirLock;
  try {
    lock = await StateDirLock.acquire(home.dir, KEYS_LOCK_FILE);
  } catch (err) {
    if (!(err instanceof StateDirLockedError)) throw err;
    const who = err.holders.length ? err.holders.map((h) => `${h.name} pid ${h.pid}`).join(", ") : "a process this user cannot see";
    throw new KeysBusyError(join(home.dir, KEYS_LOCK_FILE), who);
  }
  try {
    return await work();
  } finally {
    lock.release();
  }
}

async function refuseDuringRollout(cp: ControlPlane): Promise<void> {
  const holder = await cp.lock.holder();
  if (holder) throw new RolloutRunningError(holder.owner, holder.acquiredAt);
}

/** The chain as kept in secrets.json, typed (its links were made by signKeyAnnouncement). */
function chainOf(secrets: ControllerSecrets): KeyAnnouncement[] {
  return (secrets.signingChain ?? []) as unknown as KeyAnnouncement[];
}

/** @throws Error when `adding` more links would make a chain agents refuse (SIGNING_CHAIN_MAX_LINKS). */
function roomFor(chain: readonly KeyAnnouncement[], adding: number): void {
  if (chain.length + adding > SIGNING_CHAIN_MAX_LINKS) {
    throw new Error(`the key chain holds ${chain.length} links and agents read at most ${SIGNING_CHAIN_MAX_LINKS}: re-enroll the hosts with a new site key instead`);
  }
}

/**
 * Publishes the chain kept in secrets.json and re-signs with the current key
 * every desired entry signed by another, so online agents move over at once
 * (an agent reads the chain when it meets an assignment signed by a key it
 * does not hold as active). Idempotent: also what finishes a rotation whose
 * publish failed half-way (`netfleet keys publish`).
 * @throws Error when the chain already published is not the start of this
 * one (a state dir restored from an older copy): nothing is written.
 */
export async function publishKeys(cp: ControlPlane, secrets: ControllerSecrets): Promise<{ chainRevision: number; resigned: ResignResult[] }> {
  const links = chainOf(secrets);
  const published = await cp.desired.readSigningChain().catch(() => undefined);
  if (published) {
    const differs = published.links.findIndex((l, i) => links[i]?.signature !== l.signature);
    if (differs >= 0) {
      throw new Error(
        `the published key chain (${published.links.length} links) is not the start of the one in secrets.json (${links.length} links; link ${differs + 1} differs): ` +
          "agents that followed it would refuse this controller's key; was the state dir restored from an older copy?",
      );
    }
  }
  const chainRevision = await cp.desired.publishSigningChain(secrets.site, links);
  const resigned = await cp.desired.withKey(secrets.signing.privateKeyPem).resign(secrets.signing.keyId, (host) => cp.applied.running(host));
  return { chainRevision, resigned };
}

/**
 * `netfleet keys rotate`: a new Ed25519 key (RFC 8032) signs from now on.
 * The link announcing it is signed by the key it replaces and appended to
 * the chain; secrets.json is replaced in one atomic write (new key, the old
 * public key with its `notAfter` = now + `overlapMs`, the chain; the old
 * private key is dropped), then the chain is published and every desired
 * entry re-signed with the new key (publishKeys). Agents accept the old key
 * until `notAfter` (their clock), or until `netfleet keys retire`.
 * @throws RolloutRunningError while a rollout holds the lock, KeysBusyError
 * while another keys command runs (nothing changed either way).
 */
export function rotateSigningKey(home: ControllerHome, cp: ControlPlane, o: { overlapMs: number; now?: Date }): Promise<KeyChange> {
  return withKeysLock(home, () => rotateLocked(home, cp, o));
}

async function rotateLocked(home: ControllerHome, cp: ControlPlane, o: { overlapMs: number; now?: Date }): Promise<KeyChange> {
  await refuseDuringRollout(cp);
  const secrets = await home.secrets(undefined, { create: false });
  const now = o.now ?? new Date();
  const old = secrets.signing;
  const next = generateSigningKeys();
  const notAfter = new Date(now.getTime() + o.overlapMs).toISOString();
  const chain = chainOf(secrets);
  roomFor(chain, 1);
  const link = signKeyAnnouncement({ site: secrets.site, seq: chain.length + 1, next, previousKeyId: old.keyId, previousNotAfter: notAfter }, old.privateKeyPem, now.toISOString());
  const keep = (secrets.signingPrevious ?? []).filter((p) => Date.parse(p.notAfter) > now.getTime() && p.keyId !== old.keyId);
  const updated: ControllerSecrets = {
    ...secrets,
    signing: next,
    signingPrevious: [...keep, { keyId: old.keyId, publicKeyPem: old.publicKeyPem, notAfter }],
    signingChain: [...chain, link] as unknown as ControllerSecrets["signingChain"],
  };
  await home.saveSecrets(updated);
  const { chainRevision, resigned } = await publishKeys(cp, updated);
  return { site: secrets.site, keyId: next.keyId, previous: [{ keyId: old.keyId, notAfter }], links: [link], chainLength: chain.length + 1, chainRevision, resigned };
}

/**
 * `netfleet keys retire`: every earlier key still in its overlap is refused
 * from now on, by one retirement link each (signed by the current key),
 * whatever its `notAfter`; then published as rotateSigningKey does.
 * @throws RolloutRunningError while a rollout holds the lock, KeysBusyError
 * while another keys command runs (nothing changed either way).
 */
export function retireSigningKeys(home: ControllerHome, cp: ControlPlane, o: { now?: Date } = {}): Promise<KeyChange> {
  return withKeysLock(home, () => retireLocked(home, cp, o));
}

async function retireLocked(home: ControllerHome, cp: ControlPlane, o: { now?: Date }): Promise<KeyChange> {
  await refuseDuringRollout(cp);
  const secrets = await home.secrets(undefined, { create: false });
  const now = o.now ?? new Date();
  const chain = [...chainOf(secrets)];
  const retired = secrets.signingPrevious ?? [];
  roomFor(chain, retired.length);
  const links: KeyAnnouncement[] = [];
  for (const p of retired) {
    const link = signKeyAnnouncement(
      { site: secrets.site, seq: chain.length + 1, next: { keyId: secrets.signing.keyId, publicKeyPem: secrets.signing.publicKeyPem }, previousKeyId: p.keyId, previousNotAfter: now.toISOString() },
      secrets.signing.privateKeyPem,
      now.toISOString(),
    );
    chain.push(link);
    links.push(link);
  }
  const updated: ControllerSecrets = { ...secrets, signingPrevious: [], signingChain: chain as unknown as ControllerSecrets["signingChain"] };
  if (links.length) await home.saveSecrets(updated);
  const { chainRevision, resigned } = await publishKeys(cp, updated);
  return { site: secrets.site, keyId: secrets.signing.keyId, previous: retired.map((p) => ({ keyId: p.keyId, notAfter: now.toISOString() })), links, chainLength: chain.length, chainRevision, resigned };
}

/** `netfleet keys publish`: publishKeys with the state dir's secrets, under keys.lock. */
export function republishKeys(home: ControllerHome, cp: ControlPlane): Promise<{ secrets: ControllerSecrets; chainRevision: number; resigned: ResignResult[] }> {
  return withKeysLock(home, async () => {
    const secrets = await home.secrets(undefined, { create: false });
    return { secrets, ...(await publishKeys(cp, secrets)) };
  });
}

/** What `netfleet keys rotate-enrollment` did: the new token, and until when the earlier ones are accepted. */
export interface EnrollmentRotation {
  site: string;
  token: string;
  previous: { enrollPassword: string; notAfter: string }[];
}

/**
 * `netfleet keys rotate-enrollment`: a new join token, same id (the
 * enrollment user's NATS password, which per-host tokens carry too) and a
 * new secret (24 random bytes, base64url); the token it replaces stays
 * accepted until now + `overlapMs` (secrets.json `enrollment.previous`),
 * then refused. Enrolled hosts hold their own NATS users and are not
 * affected. Only the state dir is written here: the controller reads the
 * accepted tokens from it (acceptedEnrollmentTokens).
 * @throws KeysBusyError while another keys command runs (nothing changed).
 */
export function rotateEnrollment(home: ControllerHome, o: { overlapMs: number; now?: Date }): Promise<EnrollmentRotation> {
  return withKeysLock(home, () => rotateEnrollmentLocked(home, o));
}

async function rotateEnrollmentLocked(home: ControllerHome, o: { overlapMs: number; now?: Date }): Promise<EnrollmentRotation> {
  const secrets = await home.secrets(undefined, { create: false });
  const now = o.now ?? new Date();
  const notAfter = new Date(now.getTime() + o.overlapMs).toISOString();
  const earlier = (secrets.enrollment.previous ?? []).filter((p) => Date.parse(p.notAfter) > now.getTime());
  const { enrollPassword, token } = secrets.enrollment;
  const previous = o.overlapMs > 0 ? [...earlier, { enrollPassword, token, notAfter }] : earlier;
  // The id (the enrollment user's NATS password) stays: per-host tokens minted earlier carry it, and the site token
  // alone only ever asks for a quarantined claim; the secret, what the facts present, is new.
  const fresh = { enrollPassword, token: `${enrollPassword}.${randomBytes(24).toString("base64url")}` };
  await home.saveSecrets({ ...secrets, enrollment: { ...fresh, previous } });
  return { site: secrets.site, token: fresh.token, previous: previous.map((p) => ({ enrollPassword: p.enrollPassword, notAfter: p.notAfter })) };
}

/** Prints a key change: one line per fact, or the JSON document. */
export function printKeyChange(action: "rotate" | "retire", change: KeyChange, out: CommandOutput): number {
  const failed = change.resigned.filter((r) => r.error !== undefined);
  if (out.json) {
    out.emit({ action, ...change, links: change.links.map((l) => ({ seq: l.seq, keyId: l.keyId, previousKeyId: l.previousKeyId, previousNotAfter: l.previousNotAfter, signerKeyId: l.signerKeyId })) });
  } else {
    out.line(`site ${change.site}: signing key ${change.keyId}`);
    for (const p of change.previous) out.line(action === "rotate" ? `previous key ${p.keyId} accepted by agents until ${p.notAfter}` : `key ${p.keyId} retired: agents refuse it`);
    if (action === "retire" && change.previous.length === 0) out.line("no earlier key in its overlap: nothing to retire");
    out.line(`key chain: ${change.chainLength} link(s), published (KV revision ${change.chainRevision})`);
    out.line(`desired states re-signed: ${change.resigned.length - failed.length}${failed.length ? `, ${failed.length} not (netfleet keys publish retries them)` : ""}`);
    for (const f of failed) out.error(`${f.host}: ${f.error}`);
  }
  return failed.length ? 1 : 0;
}
