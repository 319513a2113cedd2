import { createHash } from "node:crypto";
import { DNS_LABEL } from "../names.ts";

/**
 * Every NATS subject, KV bucket and key netfleet uses, one function each.
 * Site and host names are DNS labels, so they are single subject tokens
 * and can never carry a wildcard.
 */

function label(kind: string, value: string): string {
  if (!DNS_LABEL.test(value)) throw new Error(`${kind} ${JSON.stringify(value)} is not a DNS label`);
  return value;
}

/** A host token, or `*` for the controller's wildcard subscriptions. */
function hostToken(host: string): string {
  return host === "*" ? host : label("host", host);
}

/** Signed desired assignments, one key per host; written by the controller only. */
export function desiredBucket(site: string): string {
  return `nf_${label("site", site)}_desired`;
}

/** The host registry (enrollment state, facts, last seen); controller only. */
export function hostsBucket(site: string): string {
  return `nf_${label("site", site)}_hosts`;
}

/**
 * Pending enrollment claims (quarantined, waiting for an operator), one key
 * per claimed name, kept apart from the registry's approved records; only
 * the controller writes it. Bounded (buckets.ts): count, value size, age.
 */
export function claimsBucket(site: string): string {
  return `nf_${label("site", site)}_claims`;
}

/** Host tokens already used, one key per token nonce (`kv.create`: a nonce is taken once); controller only. */
export function usedTokensBucket(site: string): string {
  return `nf_${label("site", site)}_tokens`;
}

/** The last report of each agent, written by that agent to its own key. */
export function appliedBucket(site: string): string {
  return `nf_${label("site", site)}_applied`;
}

/**
 * DHCP leases, one key per backend host (`hostKey(backend)`): that host's
 * agent writes its own key (a `LeaseTable`), every agent may read every key
 * (VM hosts pin VM ports to the leases their backend handed out).
 */
export function leasesBucket(site: string): string {
  return `nf_${label("site", site)}_leases`;
}

/**
 * Largest value the leases bucket stores (its `max_msg_size`), bytes: the
 * stock nats-server max_payload (1 MiB), about 15,000 leases at ~65 bytes
 * of JSON each. A backend with a bigger table publishes nothing (and logs).
 */
export const LEASES_MAX_VALUE_BYTES = 1024 * 1024;

/**
 * Each host's corrective history (a `CorrectiveLog`, one key per host):
 * written by that host's agent to its own key only, read by the controller
 * (`netfleet status`). One value per key (history 1): the value holds the list.
 */
export function correctiveBucket(site: string): string {
  return `nf_${label("site", site)}_corrective`;
}

/** Largest value the corrective bucket stores, bytes; an agent drops its oldest entries until its log fits. */
export const CORRECTIVE_MAX_VALUE_BYTES = 256 * 1024;

/** How many corrective changes an agent keeps in its log (the count goes on past it). */
export const CORRECTIVE_RECENT = 20;

/** The rollout lock and the rollout state record. */
export function rolloutBucket(site: string): string {
  return `nf_${label("site", site)}_rollout`;
}

/** A host's key in the per-host buckets (desired, applied, registry, ...): the host name, checked to be a DNS label. @throws Error otherwise. */
export function hostKey(host: string): string {
  return label("host", host);
}

/** Keys of the rollout bucket: the lock (who runs a rollout) and the state record (how far it got). */
export const ROLLOUT_LOCK_KEY = "lock";
export const ROLLOUT_STATE_KEY = "state";

/** The stream behind a KV bucket. */
export function kvStream(bucket: string): string {
  return `KV_${bucket}`;
}

/** The subject a KV key is stored under; a core subscription on it sees every write. */
export function kvSubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/** Direct get of the last value of one key, the key named in the subject (so permissions can name it). */
export function directGetSubject(bucket: string, key: string): string {
  return `$JS.API.DIRECT.GET.${kvStream(bucket)}.${kvSubject(bucket, key)}`;
}

/**
 * The controller's word that the desired bucket took a host's value: sent
 * (core NATS, at most once) once the bucket acknowledged the write, with
 * the stored bytes as its body and, in the STORED_*_HEADER headers, the
 * write's stream sequence, the envelope's revision and the bytes' sha256.
 * The agent follows this subject only, and judges the body as the stored
 * value without reading the key (issue 18: the read's round trip, then the
 * write's copy on the key's own subject `$KV.<bucket>.<host>`, were 3 of
 * 12.3 messages per host per rollout). That copy reaches subscribers
 * before the stream took the value, and also when it refused it
 * (compare-and-set), so it was only a hint; agents before the body still
 * follow it, and match the digest to it. Only the controller may publish
 * here, and only that host's agent may subscribe (permissions.ts
 * agentUser).
 */
export function desiredStoredSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.stored.${hostToken(host)}`;
}

/**
 * Headers of a desiredStoredSubject message: the stream sequence (KV
 * revision) the value was stored at, the envelope's revision, and the
 * stored bytes' sha256 (storedDigest). Decimal, decimal, 64 hex digits. The
 * names follow JetStream's own `Nats-Sequence` and `Nats-Msg-Size` of a
 * republished message (ADR-28), which nats-server 2.9 cannot add to an
 * existing bucket ("stream configuration update can not change RePublish").
 */
export const STORED_SEQUENCE_HEADER = "Netfleet-Sequence";
export const STORED_REVISION_HEADER = "Netfleet-Revision";
export const STORED_DIGEST_HEADER = "Netfleet-Digest";

/** The digest a desiredStoredSubject message names: sha256 of the stored bytes, lowercase hex (64 digits). */
export function storedDigest(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Enrollment facts from an agent (`*` for the controller's subscription). */
export function enrollSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.enroll.${hostToken(host)}`;
}

/** Encrypted credentials for an approved agent, to the key it enrolled with. */
export function welcomeSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.welcome.${hostToken(host)}`;
}

/** Apply reports from one agent (`*` for the controller's subscription). */
export function reportSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.report.${hostToken(host)}`;
}

/** Heartbeats from one agent (`*` for the controller's subscription). */
export function heartbeatSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.hb.${hostToken(host)}`;
}

/** Check-mode requests to one agent (request/reply; the agent answers on agentReplySubject). */
export function checkSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.check.${hostToken(host)}`;
}

/**
 * `netfleet show HOST` requests to one agent (request/reply, protocol/show.ts): what it sees on its host now.
 * Only the controller may publish here, and only that host's agent may subscribe (permissions.ts agentUser).
 */
export function showSubject(site: string, host: string): string {
  return `nf.${label("site", site)}.show.${hostToken(host)}`;
}

/** A reply subject's last token: one per request (a NUID: letters and digits), or `*` in the agent's permission. */
const REPLY_ID = /^(\*|[A-Za-z0-9]{1,64})$/;

/**
 * Where a host's agent answers the controller's requests to it (check, show, rekey): `nf.<site>.reply.<host>.<id>`,
 * a fresh `id` per request (`*`: the agent's publish permission, permissions.ts agentUser). The agent may publish
 * under its own host's prefix and to no inbox. With nats-server's `allow_responses` instead, an agent may answer any
 * message it hears that carries a reply subject, and it hears the controller's JetStream publish of its own desired
 * key on the key's subject: it could answer that publish with a forged acknowledgement (seen on a 3-node cluster:
 * the controller took `seq` 424242 for a write stored at 4).
 * @throws Error when `site` or `host` is not a DNS label, or `id` not a token of letters and digits.
 */
export function agentReplySubject(site: string, host: string, id: string): string {
  if (!REPLY_ID.test(id)) throw new Error(`reply id ${JSON.stringify(id)} is not a token of letters and digits`);
  return `nf.${label("site", site)}.reply.${label("host", host)}.${id}`;
}

/** Operator requests to the controller service (approve, reject). */
export function adminSubject(site: string): string {
  return `nf.${label("site", site)}.admin`;
}

/** Rekey requests to one approved agent: a subject of its own inbox, which only that agent may subscribe to. */
export function rekeySubject(site: string, host: string): string {
  return `${agentInboxPrefix(site, host)}.rekey`;
}

/** Authenticated context of sealed rekey credentials: they open only for this site and host. */
export function rekeyContext(site: string, host: string): string {
  return `netfleet rekey ${label("site", site)}/${label("host", host)}`;
}

/** Replies to an agent go here, so an agent may subscribe to its own replies and nobody else's. */
export function agentInboxPrefix(site: string, host: string): string {
  return `_nf_inbox.${label("site", site)}.${label("host", host)}`;
}

/** The host token of a subject `nf.<site>.<kind>.<host>`, or undefined when it is not one. */
export function hostOfSubject(subject: string): string | undefined {
  const host = subject.split(".")[3];
  return host !== undefined && DNS_LABEL.test(host) && subject.split(".").length === 4 ? host : undefined;
}
