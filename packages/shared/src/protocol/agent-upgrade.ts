/**
 * The wire of agent upgrades (issue 15, point 9), shared by the controller
 * (`netfleet rollout SITE --agent-bundle FILE`) and the agent (upgrade.ts).
 * Additive to protocol 1.1: two new buckets, nothing in the existing
 * messages changes, and an agent without upgrade support never reads them.
 *
 *   object store `nf_<site>_bundles` (stream `OBJ_nf_<site>_bundles`)
 *       one object per bundle, named `agent-<version>-<sha256[0:12]>.mjs`;
 *       its metadata `netfleet-manifest` holds the signed BundleManifest.
 *   KV bucket `nf_<site>_agent`
 *       `want.<host>`  written by the controller: the signed AgentTarget, the
 *                      bundle this host's agent is to run (its manifest inside);
 *       `run.<host>`   written by the host's agent: AgentRunning, the version
 *                      it runs and how its last upgrade went.
 *
 * The agent reads without any JetStream consumer or stream-info call (its
 * permissions allow none, see controller nats/permissions.ts; agent
 * fleet/upgrade-fetch.ts): the target by
 * a direct get naming its key, the object's meta and chunks by direct gets
 * on the object store's stream (`$JS.API.DIRECT.GET.OBJ_<bucket>` with a
 * JSON body: `last_by_subj`, or `seq` + `next_by_subj`). Layout of the object
 * store: NATS ADR-20 (Object Store), as nats.js @nats-io/obj writes it:
 * meta on `$O.<bucket>.M.<base64url(name), padded>` (ObjectInfo JSON),
 * chunks on `$O.<bucket>.C.<nuid>`, digest `SHA-256=<base64url>`.
 *
 * Signatures: ed25519 (the controller's site signing key, the same key as
 * assignments) over the canonical JSON (shared canonical.ts) of the record
 * without its `signature`; `keyId` is shared signing.ts's signingKeyId.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { z } from "zod";
import { canonicalJson } from "../canonical.ts";
import { signingKeyId, type TrustedKeys } from "./signing.ts";
import { PROTOCOL_UNDERSTOOD, PROTOCOL_VERSION, parseProtocolVersion } from "./version.ts";

/** This peer's protocol major: records of another major are not read (version.ts). */
const OUR_MAJOR = parseProtocolVersion(PROTOCOL_VERSION)!.major;

/** True when `record.protocol` is this peer's major (any minor: a newer minor's fields are kept, signed, unread). */
function sameMajor(record: unknown): boolean {
  return parseProtocolVersion((record as { protocol?: unknown } | null)?.protocol)?.major === OUR_MAJOR;
}

/** The object store holding the site's agent bundles. */
export function bundleBucket(site: string): string {
  return `nf_${site}_bundles`;
}

/** The KV bucket of agent targets (`want.<host>`) and agent running reports (`run.<host>`). */
export function agentBucket(site: string): string {
  return `nf_${site}_agent`;
}

/** Key of the controller's target record for `host`. */
export function wantKey(host: string): string {
  return `want.${host}`;
}

/** Key of the agent's running report for `host`. */
export function runKey(host: string): string {
  return `run.${host}`;
}

/** The object store's stream (ADR-20: `OBJ_<bucket>`). */
export function bundleStream(site: string): string {
  return `OBJ_${bundleBucket(site)}`;
}

/** The object name of a bundle: `agent-<version>-<first 12 hex of sha256>.mjs`. */
export function bundleObjectName(version: string, sha256: string): string {
  return `agent-${version}-${sha256.slice(0, 12)}.mjs`;
}

/** The largest bundle an agent will fetch (bytes): a real one is about 2 MB. */
export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

/**
 * The subjects an agent's NATS user needs for upgrades, for
 * controller nats/permissions.ts: publish to the direct get of its own
 * `want` key, the put of its own `run` key and its direct get (read back),
 * and direct gets on the bundle stream (meta and chunks; the stream holds
 * only bundles, which are not secret); subscribe to its own `want` key's
 * subject (the hint that the target changed).
 */
export function agentUpgradePermissions(site: string, host: string): { publish: string[]; subscribe: string[] } {
  const b = agentBucket(site);
  return {
    publish: [
      `$JS.API.DIRECT.GET.KV_${b}.$KV.${b}.${wantKey(host)}`,
      `$KV.${b}.${runKey(host)}`,
      `$JS.API.DIRECT.GET.KV_${b}.$KV.${b}.${runKey(host)}`,
      `$JS.API.DIRECT.GET.${bundleStream(site)}`,
    ],
    subscribe: [`$KV.${b}.${wantKey(host)}`],
  };
}

const VERSION = z.string().regex(/^[0-9A-Za-z.+-]{1,64}$/, "a version of letters, digits and . + -");
const SHA256 = z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits");
const DNS = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/);

const manifestShape = {
  protocol: z.string().max(16),
  kind: z.literal("agent-bundle"),
  site: DNS,
  version: VERSION,
  sha256: SHA256,
  /** Bytes. */
  size: z.number().int().min(1).max(MAX_BUNDLE_BYTES),
  /** Object name in the bundle store. */
  object: z.string().regex(/^[0-9A-Za-z._+-]{1,128}$/),
  signedAt: z.iso.datetime({ offset: true }),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  signature: z.string().max(200),
};

/** A bundle's signed manifest: what it is (version, sha256, size) and where it is (object). Unknown fields of a newer minor are kept (they are signed). */
export const BundleManifest = z.looseObject(manifestShape);
export type BundleManifest = z.output<typeof BundleManifest>;

/**
 * The controller's target for one host (`want.<host>`): run the bundle of
 * `manifest`. `revision` counts up per host (ms since the epoch when written);
 * `trialS` is how long the new version has to report before it is put
 * back (seconds). Signed as a whole, so a target cannot be moved to another
 * host; the manifest inside carries its own signature too.
 */
export const AgentTarget = z.looseObject({
  protocol: z.string().max(16),
  kind: z.literal("agent-target"),
  site: DNS,
  host: DNS,
  revision: z.number().int().min(1),
  manifest: BundleManifest,
  trialS: z.number().int().min(5).max(3600),
  signedAt: z.iso.datetime({ offset: true }),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  signature: z.string().max(200),
});
export type AgentTarget = z.output<typeof AgentTarget>;

/**
 * What the agent says it runs (`run.<host>`), written at every start and
 * after each upgrade step. `state`: "running" (version in force, nothing
 * pending), "upgrading" (fetched and staged `target`, restarting into it),
 * "refused" (the target failed verification: `reason`; nothing was written),
 * "reverted" (the new version did not come up and report within its trial:
 * the previous one runs again, `reason`), "failed" (could not fetch or
 * stage: `reason`), "unsupported" (not started by the supervisor of a
 * bundle: it cannot replace itself). `sha256` is that of the bundle file it
 * runs (null when not run from a bundle).
 */
export const AgentRunning = z.looseObject({
  protocol: z.string().max(16),
  kind: z.literal("agent-running"),
  site: DNS,
  host: DNS,
  version: VERSION,
  sha256: SHA256.nullable(),
  /** Bytes of that bundle file (absent when not run from a bundle): with version and sha256, what a revert's manifest names. */
  size: z.number().int().min(1).max(MAX_BUNDLE_BYTES).optional(),
  state: z.enum(["running", "upgrading", "refused", "reverted", "failed", "unsupported"]),
  /** The target this state is about (its version, sha256 and revision), if any. */
  target: z.strictObject({ version: VERSION, sha256: SHA256, revision: z.number().int().min(1) }).optional(),
  reason: z.string().max(2000).optional(),
  at: z.iso.datetime({ offset: true }),
});
export type AgentRunning = z.output<typeof AgentRunning>;

/** Why the agent will not use a target: the reason in its `run.<host>` record and its `upgrade-refused` log line. */
export type UpgradeRefusal = "decode" | "unknown-key" | "retired-key" | "bad-signature" | "wrong-host" | "size-mismatch" | "sha256-mismatch" | "too-large" | "missing";

/** A target or bundle the agent will not use; nothing was written. */
export class UpgradeRefusedError extends Error {
  readonly reason: UpgradeRefusal;
  constructor(reason: UpgradeRefusal, message: string) {
    super(message);
    this.name = "UpgradeRefusedError";
    this.reason = reason;
  }
}

/** The bytes a signature covers: canonical JSON of the record without `signature`. */
function signedBytes(record: Record<string, unknown>): Buffer {
  const { signature: _s, ...rest } = record;
  return Buffer.from(canonicalJson(rest));
}

/** Signs `record` (any fields but `signature`, `keyId`) with the controller's key (PKCS#8 PEM): adds `keyId`, `signature` (base64). */
export function signRecord<T extends Record<string, unknown>>(record: T, privateKeyPem: string): T & { keyId: string; signature: string } {
  const key = createPrivateKey(privateKeyPem);
  const withKey = { ...record, keyId: signingKeyId(createPublicKey(key)) };
  return { ...withKey, signature: sign(null, signedBytes(withKey), key).toString("base64") };
}

/**
 * The public key a record's `keyId` names in the trusted set at `now` (the
 * same rules as assignments, shared signing.ts: the active key, or an
 * earlier one within its overlap); a PEM string is a set of that one key.
 * @throws UpgradeRefusedError "retired-key" (an earlier key past its overlap, or retired), "unknown-key".
 */
function keyFor(trust: string | KeyObject | TrustedKeys, keyId: string, what: string, now: number): KeyObject | string {
  if (typeof trust === "string" || !("active" in trust)) {
    const id = signingKeyId(trust);
    if (keyId !== id) throw new UpgradeRefusedError("unknown-key", `${what}: signed by unknown key ${keyId} (trusted: ${id})`);
    return trust;
  }
  if (trust.active.keyId === keyId) return trust.active.publicKeyPem;
  const earlier = trust.previous.find((p) => p.keyId === keyId);
  if (earlier && Date.parse(earlier.notAfter) > now) return earlier.publicKeyPem;
  if (earlier) throw new UpgradeRefusedError("retired-key", `${what}: signed by retired key ${keyId} (its overlap ended ${earlier.notAfter}; trusted: ${trust.active.keyId})`);
  throw new UpgradeRefusedError("unknown-key", `${what}: signed by unknown key ${keyId} (trusted: ${trust.active.keyId})`);
}

/**
 * Checks a record's ed25519 signature against the trusted keys: one key
 * (SPKI PEM or KeyObject), or the agent's trusted set across rotations
 * (TrustedKeys, as assignments: agent fleet/desired.ts SigningTrust).
 * @throws UpgradeRefusedError "unknown-key", "retired-key", "bad-signature".
 */
export function verifyRecord(record: { keyId: string; signature: string } & Record<string, unknown>, trust: string | KeyObject | TrustedKeys, what: string, now = Date.now()): void {
  const pem = keyFor(trust, record.keyId, what, now);
  const key = typeof pem === "string" ? createPublicKey(pem) : pem;
  if (!verify(null, signedBytes(record), key, Buffer.from(record.signature, "base64"))) {
    throw new UpgradeRefusedError("bad-signature", `${what}: signature does not verify (forged or altered)`);
  }
}

/** The key ids a stored target names (the target's and its manifest's), for a caller that must refresh its trusted set first; empty when it does not parse. */
export function targetKeyIds(data: Uint8Array): string[] {
  try {
    const v = JSON.parse(Buffer.from(data).toString("utf8")) as { keyId?: unknown; manifest?: { keyId?: unknown } };
    return [v.keyId, v.manifest?.keyId].filter((k): k is string => typeof k === "string");
  } catch {
    return [];
  }
}

/** The signed manifest of a bundle. */
export function signManifest(site: string, code: Uint8Array, version: string, privateKeyPem: string, signedAt = new Date().toISOString()): BundleManifest {
  const sha256 = createHash("sha256").update(code).digest("hex");
  return signRecord(
    { protocol: PROTOCOL_VERSION, kind: "agent-bundle" as const, site, version, sha256, size: code.length, object: bundleObjectName(version, sha256), signedAt },
    privateKeyPem,
  );
}

/** The signed target of `host`: run the bundle of `manifest`, with `trialS` seconds to come up and report. */
export function signTarget(host: string, manifest: BundleManifest, trialS: number, privateKeyPem: string, revision = Date.now()): AgentTarget {
  return signRecord(
    { protocol: PROTOCOL_VERSION, kind: "agent-target" as const, site: manifest.site, host, revision, manifest, trialS, signedAt: new Date().toISOString() },
    privateKeyPem,
  );
}

/**
 * Decodes and verifies a stored target for `site`/`host`: protocol major
 * (target and manifest), shape, the target's signature, the manifest's signature (same trusted key), host and
 * site. Nothing is fetched.
 * @throws UpgradeRefusedError ("decode", "unknown-key", "bad-signature", "wrong-host").
 */
export function verifyTarget(data: Uint8Array, trust: string | TrustedKeys, where: { site: string; host: string }, now = Date.now()): AgentTarget {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch (err) {
    throw new UpgradeRefusedError("decode", `agent target: not JSON (${(err as Error).message})`);
  }
  if (!sameMajor(value) || !sameMajor((value as { manifest?: unknown } | null)?.manifest)) {
    throw new UpgradeRefusedError("decode", `agent target: speaks protocol ${String((value as { protocol?: unknown } | null)?.protocol)}; this peer understands ${PROTOCOL_UNDERSTOOD}`);
  }
  const parsed = AgentTarget.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new UpgradeRefusedError("decode", `agent target: ${issue.path.join(".")}: ${issue.message}`);
  }
  // Verified over the record as received (a newer minor's fields included), not zod's output.
  const received = value as AgentTarget;
  verifyRecord(received, trust, `agent target revision ${received.revision}`, now);
  verifyRecord(received.manifest, trust, `bundle manifest ${received.manifest.object}`, now);
  if (received.site !== where.site || received.host !== where.host || received.manifest.site !== where.site) {
    throw new UpgradeRefusedError("wrong-host", `agent target is for ${received.site}/${received.host}, not ${where.site}/${where.host}`);
  }
  return parsed.data;
}

/** Encodes an agent's running report (checked against AgentRunning first). */
export function encodeRunning(record: Omit<AgentRunning, "protocol" | "kind" | "at">): Uint8Array {
  const full = AgentRunning.parse({ protocol: PROTOCOL_VERSION, kind: "agent-running", ...record, at: new Date().toISOString() });
  return Buffer.from(JSON.stringify(full));
}

/**
 * Decodes an agent's running report (this peer's protocol major, any minor).
 * @throws Error `<source>: ...` when it is not one.
 */
export function decodeRunning(source: string, data: Uint8Array): AgentRunning {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch (err) {
    throw new Error(`${source}: not JSON (${(err as Error).message})`);
  }
  if (!sameMajor(value)) throw new Error(`${source}: speaks protocol ${String((value as { protocol?: unknown } | null)?.protocol)}; this peer understands ${PROTOCOL_UNDERSTOOD}`);
  const parsed = AgentRunning.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: ${issue.path.join(".")}: ${issue.message}`);
  }
  return parsed.data;
}

/** SHA-256 (hex) of a bundle's bytes. */
export function bundleSha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
