import { z } from "zod";
import { DIFF_MAX_CHARS } from "../diff.ts";
import { DecodeError } from "../errors.ts";
import { DNS_LABEL, INTERFACE_NAME, MAC_ADDRESS } from "../names.ts";
import { decodeFromPeer, stampProtocol } from "./version.ts";

/** Every message on the wire, as schemas; types are derived from them. */

const dnsLabel = z.string().regex(DNS_LABEL);
const hash = z.string().regex(/^[0-9a-f]{64}$/);
const timestamp = z.iso.datetime({ offset: true });
const version = z.string().max(200).nullable();

/** A kernel module: loaded now, or available to load (or built in). */
export const KernelFeature = z.strictObject({ loaded: z.boolean(), available: z.boolean() });

/** One network interface an agent sees (ip -json link): name, MAC (null when none), operstate and link kind. */
export const InterfaceFact = z.strictObject({
  name: z.string().regex(INTERFACE_NAME),
  mac: z.string().regex(MAC_ADDRESS).nullable(),
  state: z.string().max(32).nullable(),
  kind: z.string().max(32).nullable(),
});

/**
 * Largest enroll message the controller reads, bytes of its encoding (UTF-8
 * JSON): 16 KiB, room for ~120 interfaces. The agent trims its interface
 * list to fit (enroll.ts: physical links first); a bigger message is refused
 * with a DecodeError before it is parsed, and nothing is stored.
 */
export const ENROLL_FACTS_MAX_BYTES = 16 * 1024;

/** What an agent tells the controller when it enrolls (and again after each start). */
export const EnrollFacts = z.strictObject({
  kind: z.literal("enroll"),
  site: dnsLabel,
  /** The name the agent goes by (its hostname unless told otherwise). */
  hostname: dnsLabel,
  token: z.string().min(1).max(512),
  agentVersion: z.string().max(64),
  interfaces: z.array(InterfaceFact).max(4096),
  kernel: z.strictObject({ "8021q": KernelFeature, bonding: KernelFeature, openvswitch: KernelFeature }),
  ovsVersion: version,
  libvirtVersion: version,
  /** X25519 public key (SPKI DER, base64) the welcome is encrypted to. */
  publicKey: z.string().regex(/^[A-Za-z0-9+/=]{40,120}$/),
  sentAt: timestamp,
});

/** Credentials of an approved agent, sealed to the key it enrolled with. */
export const Welcome = z.strictObject({
  kind: z.literal("welcome"),
  site: dnsLabel,
  hostname: dnsLabel,
  ephemeralKey: z.string().max(200),
  iv: z.string().max(64),
  ciphertext: z.string().max(16384),
  tag: z.string().max(64),
});

/** The sealed content of a welcome. */
export const AgentCredentials = z.strictObject({
  site: dnsLabel,
  /** The inventory host the agent was matched to: the name it uses from now on. */
  host: dnsLabel,
  user: z.string().min(1).max(128),
  password: z.string().min(16).max(256),
  inboxPrefix: z.string().max(256),
  signingKey: z.strictObject({ keyId: z.string().regex(/^[0-9a-f]{16}$/), publicKeyPem: z.string().max(1024) }),
});

/**
 * New credentials for an approved, connected agent (`netfleet hosts rekey`): the controller sends it as a
 * request to the agent's own inbox (`rekeySubject`), sealed to the key the agent enrolled with under
 * `rekeyContext(site, host)`; the content is an AgentCredentials. The agent keeps them and answers a
 * RekeyReply; only then does the controller swap the password on the server.
 */
export const Rekey = z.strictObject({
  kind: z.literal("rekey"),
  site: dnsLabel,
  host: dnsLabel,
  ephemeralKey: z.string().max(200),
  iv: z.string().max(64),
  ciphertext: z.string().max(16384),
  tag: z.string().max(64),
});

/** The agent's answer to a Rekey: ok once the new credentials are stored (it reconnects with them when the old ones are refused). */
export const RekeyReply = z.strictObject({
  kind: z.literal("rekey-reply"),
  ok: z.boolean(),
  error: z.string().max(2000).optional(),
});

/** How many resources of a pass were ok (already converged), changed, failed, or pending (check mode: would change). */
export const ResultsSummary = z.strictObject({
  ok: z.number().int().min(0),
  changed: z.number().int().min(0),
  failed: z.number().int().min(0),
  pending: z.number().int().min(0),
});

/**
 * One resource's result as reported (Salt's word): `id` (kind[name]),
 * `result` true (ok or changed), false (failed) or null (pending, check
 * mode), and the agent's `comment`.
 */
export const ReportedResult = z.strictObject({
  id: z.string().max(200),
  result: z.boolean().nullable(),
  comment: z.string().max(2000).optional(),
});

/**
 * One field a pass changed, as text: `before` is what the host had (the
 * drift), `after` what the agent put back. Strings travel as they are,
 * lists of strings or numbers one element a line, anything else as JSON;
 * the agent cuts long values and says so in the text (`[...]` markers).
 */
export const FieldChange = z.strictObject({
  field: z.string().max(200),
  before: z.string().max(4000),
  after: z.string().max(4000),
});

/**
 * A resource a daemon pass (periodic or event-driven, outside an apply)
 * changed back to its desired state: what (`id`, `changes`), when (`at`,
 * the pass's end). `corrective` is always true: the record says what kind
 * of change it is. `truncated`: fields or values were cut to fit.
 */
export const CorrectiveChange = z.strictObject({
  id: z.string().max(200),
  at: timestamp,
  corrective: z.literal(true),
  changes: z.array(FieldChange).max(64),
  truncated: z.boolean().optional(),
});

/**
 * A host's corrective history, one value per host in `nf_<site>_corrective`
 * (correctiveBucket), written only by that host's agent (permissions.ts):
 * every corrective change it has reported (`count`, since its record
 * began), and the last few of them, oldest first (`recent`, at most
 * CORRECTIVE_RECENT kept by the agent; the schema takes up to 64). Applied
 * reports never touch it, so a converged report does not erase it.
 */
export const CorrectiveLog = z.strictObject({
  kind: z.literal("corrective-log"),
  site: dnsLabel,
  host: dnsLabel,
  count: z.number().int().min(0),
  recent: z.array(CorrectiveChange).max(64),
  at: timestamp,
});

/** After every apply (and rollback): what the host now runs. */
export const Report = z.strictObject({
  kind: z.literal("report"),
  site: dnsLabel,
  host: dnsLabel,
  /** The assignment revision now applied; 0 when none. */
  revision: z.number().int().min(0),
  hash: hash.nullable(),
  rolledBack: z.boolean(),
  /** When rolledBack: the revision that was undone. */
  rolledBackRevision: z.number().int().min(1).optional(),
  summary: ResultsSummary,
  results: z.array(ReportedResult).max(10000),
  /** Set on a report sent after a periodic or event-driven pass repaired drift: the resources it changed back. */
  corrective: z.array(z.string().max(200)).max(10000).optional(),
  /** With `corrective`: what each repaired resource had, and what it has again (at most 200, the first ones). */
  correctiveChanges: z.array(CorrectiveChange).max(200).optional(),
  at: timestamp,
});

/** A check-mode request: what would the agent change to reach this (signed) assignment? Nothing is applied. */
export const CheckRequest = z.strictObject({
  kind: z.literal("check"),
  site: dnsLabel,
  host: dnsLabel,
  /** A signed assignment envelope (see signing.ts), verified like a desired one except for its revision. */
  envelope: z.unknown(),
});

/**
 * One resource of a check: its ReportedResult, and what would change:
 * `changes` the field names (protocol 1.0); since 1.2 (optional, older
 * peers drop them) `fields` each field's value before and after as text
 * (FieldChange; what is cut says so), and `diff` the unified diff, live →
 * desired, of a resource made of text (nft ruleset, dnsmasq files, libvirt
 * XML, a bridge's OpenFlow rules per VM port), cut at DIFF_MAX_CHARS
 * (@netfleet/shared cutDiff).
 */
export const CheckedResult = ReportedResult.extend({
  changes: z.array(z.string().max(200)).max(200).optional(),
  fields: z.array(FieldChange).max(64).optional(),
  diff: z.string().max(DIFF_MAX_CHARS).optional(),
});

/**
 * An agent's answer to a CheckRequest: what it runs now, and per resource
 * what it would change (CheckedResult). `observed` (since 1.2): sha256 hex
 * of what the check observed (the agent's observedHash), what a plan made
 * from this reply is applied against.
 */
export const CheckReply = z.strictObject({
  kind: z.literal("check-result"),
  site: dnsLabel,
  host: dnsLabel,
  /** The revision the host runs now. */
  revision: z.number().int().min(0),
  hash: hash.nullable(),
  ok: z.boolean(),
  error: z.string().max(2000).optional(),
  summary: ResultsSummary,
  results: z.array(CheckedResult).max(10000),
  observed: hash.optional(),
  at: timestamp,
});

/**
 * Operator requests to the running controller service (`netfleet serve`), controller credentials only:
 * approve or reject a host; revoke its NATS credentials (its connection is closed at once); rekey it
 * (new credentials sealed to the still-connected agent, the old password refused from then on).
 */
export const AdminRequest = z.strictObject({
  kind: z.literal("admin"),
  action: z.enum(["approve", "reject", "revoke", "rekey"]),
  host: dnsLabel,
  /** approve only: hand an approved host to the pending claim's key, named by its fingerprint (16 hex digits, `netfleet hosts` shows it). */
  replaceKey: z.string().regex(/^[0-9a-f]{16}$/).optional(),
});

/** The controller's answer to an AdminRequest: ok, or the error; `record` the host's registry record after the change. */
export const AdminReply = z.strictObject({
  ok: z.boolean(),
  error: z.string().max(2000).optional(),
  record: z.unknown().optional(),
});

/** An agent's periodic sign of life: what it runs (revision, hash) and how long it has run (`uptimeS`, seconds). */
export const Heartbeat = z.strictObject({
  kind: z.literal("heartbeat"),
  site: dnsLabel,
  host: dnsLabel,
  agentVersion: z.string().max(64),
  revision: z.number().int().min(0),
  hash: hash.nullable(),
  uptimeS: z.number().min(0),
  at: timestamp,
});

export type KernelFeature = z.output<typeof KernelFeature>;
export type InterfaceFact = z.output<typeof InterfaceFact>;
export type EnrollFacts = z.output<typeof EnrollFacts>;
export type Welcome = z.output<typeof Welcome>;
export type AgentCredentials = z.output<typeof AgentCredentials>;
export type ResultsSummary = z.output<typeof ResultsSummary>;
export type ReportedResult = z.output<typeof ReportedResult>;
export type Report = z.output<typeof Report>;
export type FieldChange = z.output<typeof FieldChange>;
export type CorrectiveChange = z.output<typeof CorrectiveChange>;
export type CorrectiveLog = z.output<typeof CorrectiveLog>;
export type Heartbeat = z.output<typeof Heartbeat>;
export type CheckRequest = z.output<typeof CheckRequest>;
export type CheckReply = z.output<typeof CheckReply>;
export type CheckedResult = z.output<typeof CheckedResult>;
export type AdminRequest = z.output<typeof AdminRequest>;
export type Rekey = z.output<typeof Rekey>;
export type RekeyReply = z.output<typeof RekeyReply>;
export type AdminReply = z.output<typeof AdminReply>;

/** JSON.parse of a message's bytes (UTF-8) or text. @throws DecodeError naming `source` when it is not JSON. */
export function parseJson(source: string, data: Uint8Array | string): unknown {
  try {
    return JSON.parse(typeof data === "string" ? data : new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (err) {
    throw new DecodeError(source, "", `not JSON: ${(err as Error).message}`);
  }
}

/**
 * Parses and validates one message or stored document (NATS message, KV
 * value) of the wire protocol: its `protocol` version is checked and
 * dropped, fields of a newer minor are dropped, the rest must fit `schema`
 * (see version.ts). Anything else is a DecodeError (a ProtocolVersionError
 * for another major) and nothing has been changed.
 */
export function decodeMessage<S extends z.ZodType>(schema: S, source: string, data: Uint8Array | string): z.output<S> {
  return decodeFromPeer(schema, source, parseJson(source, data));
}

/** A message or document as sent: UTF-8 JSON carrying `protocol: PROTOCOL_VERSION` (see version.ts). */
export function encodeMessage(message: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(stampProtocol(message)));
}
