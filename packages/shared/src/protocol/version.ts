import type { z } from "zod";
import sharedPackage from "../../package.json" with { type: "json" };
import { DecodeError } from "../errors.ts";

/**
 * The wire protocol's version, carried by every NATS message and KV value
 * in the field `protocol` as "MAJOR.MINOR" (a string, so "1.10" stays
 * apart from "1.1"). Not `version`: messages already carry software
 * versions (`agentVersion`), and a HostAssignment's `apiVersion` names its
 * document schema; this one names what both peers must agree on.
 *
 * Compatibility: a peer reads every message of its own MAJOR. A higher
 * MINOR may add optional fields, which an older reader leaves out of what
 * it decodes (a signed envelope still keeps them, as received, for its
 * signature: signing.ts); any other change is a new MAJOR, which is
 * refused whole.
 *
 * History: 1.0 the unversioned shapes with `protocol` added; 1.1 the
 * signed assignment envelope's optional `release` (signing.ts); 1.2 the
 * envelope's optional `plan` (signing.ts), the check reply's `observed` and
 * per-result `diff` (messages.ts), the show request and reply (show.ts);
 * 1.3 a VM's optional `bandwidth` in vm-port-policy (assignment-bandwidth.ts),
 * the show reply's optional counters (counters.ts), and three resource
 * kinds a site opts into (ovs-mirror, ovs-sampling, vxlan-interface): an
 * agent of 1.2 does not decode an assignment that holds one of them (its
 * resource union has no such kind), so agents are upgraded before a site
 * starts using mirrors, sFlow/IPFIX or a VXLAN uplink; 1.4 vxlan-interface's
 * optional `macs`, static unicast fdb entries (assignment-vxlan.ts).
 */
export const PROTOCOL_VERSION = "1.4";

/** The netfleet release this code belongs to (the workspace packages share one version): shared's package.json. */
export const NETFLEET_RELEASE: string = sharedPackage.version;

/**
 * How a document without a `protocol` field is read: its shapes are 1.0's,
 * written before versioning (KV values and agent files kept across the
 * upgrade), so it is read as 1.0 and with 1.0's strictness.
 */
const UNVERSIONED = "1.0";

const VERSION_TEXT = /^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$/;

/** A parsed "MAJOR.MINOR". */
export interface ProtocolVersion {
  major: number;
  minor: number;
}

/** Parses "MAJOR.MINOR" (decimal, no leading zeros); undefined for anything else. */
export function parseProtocolVersion(text: unknown): ProtocolVersion | undefined {
  const m = typeof text === "string" ? VERSION_TEXT.exec(text) : null;
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

const OURS = parseProtocolVersion(PROTOCOL_VERSION)!;

/** The versions this code reads, as a message says it: "1.x (this peer speaks 1.0)". */
export const PROTOCOL_UNDERSTOOD = `${OURS.major}.x (this peer speaks ${PROTOCOL_VERSION})`;

/**
 * A message or stored document of a protocol MAJOR this peer does not
 * speak (or with no readable version). Nothing in it was used. A
 * DecodeError, so every path that refuses an undecodable message refuses
 * this one the same way; `kind` (the message kind, e.g. "heartbeat"),
 * `received` (the version as sent, quoted, or "none") and `understood`
 * (PROTOCOL_UNDERSTOOD) say why.
 */
export class ProtocolVersionError extends DecodeError {
  readonly kind: string;
  readonly received: string;
  readonly understood: string;
  constructor(source: string, kind: string, received: string) {
    super(source, "protocol", `${kind} message speaks protocol ${received}; this peer understands ${PROTOCOL_UNDERSTOOD}`);
    this.name = "ProtocolVersionError";
    this.kind = kind;
    this.received = received;
    this.understood = PROTOCOL_UNDERSTOOD;
  }
}

/** A JSON object (not an array, not null). */
function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * The sender's version of a parsed message: its `protocol` field, or 1.0
 * without one. @throws ProtocolVersionError for another MAJOR or a value
 * that is not "MAJOR.MINOR".
 */
export function senderVersion(source: string, kind: string, value: unknown): ProtocolVersion {
  const field = isObject(value) ? value.protocol : undefined;
  const text = field === undefined ? UNVERSIONED : field;
  const version = parseProtocolVersion(text);
  if (!version || version.major !== OURS.major) {
    throw new ProtocolVersionError(source, kind, describeVersion(field));
  }
  return version;
}

/**
 * A received `protocol` value for a message, bounded and never walked: a
 * string quoted (its first 20 characters), a number as written, else its
 * JSON type ("none" when absent). A hostile value may be nested deeply.
 */
function describeVersion(field: unknown): string {
  if (field === undefined) return "none";
  if (typeof field === "string") return JSON.stringify(field.slice(0, 20));
  if (typeof field === "number" || typeof field === "boolean" || field === null) return String(field);
  return Array.isArray(field) ? "an array" : "an object";
}

/**
 * `message` as sent: a JSON object gets `protocol` (a version it already
 * holds, e.g. a signed envelope's, is kept). An object with a `toJSON` (a
 * decoded envelope, which writes itself as received) is stamped as it
 * writes itself.
 */
export function stampProtocol(message: unknown): unknown {
  const written = isObject(message) && typeof message.toJSON === "function" ? (message.toJSON as () => unknown).call(message) : message;
  return isObject(written) ? { protocol: PROTOCOL_VERSION, ...written } : written;
}

/**
 * Validates `value` against `schema` as a message from a peer of version
 * `sender`. Fields this code does not know are refused, except from a
 * newer MINOR of our MAJOR: those are the optional fields a later minor
 * added, dropped (at any depth) from a copy that is validated; `value`
 * itself is not changed. Known fields are checked as strictly either way.
 * @returns zod's result for the value with those fields dropped: its data
 * has only the schema's fields, in the schema's key order.
 */
export function parseFromPeer<S extends z.ZodType>(schema: S, value: unknown, sender: ProtocolVersion): z.ZodSafeParseResult<z.output<S>> {
  let parsed = schema.safeParse(value);
  if (parsed.success || sender.minor <= OURS.minor) return parsed;
  let copy: unknown;
  try {
    copy = structuredClone(value);
  } catch {
    return parsed; // nested too deeply to copy: refused as it is
  }
  // Each round drops at least one key, so the loop ends; real messages need one round.
  for (;;) {
    let dropped = 0;
    for (const issue of parsed.error!.issues) {
      if (issue.code !== "unrecognized_keys") continue;
      const holder = issue.path.reduce<unknown>((at, key) => (at !== null && typeof at === "object" ? (at as Record<PropertyKey, unknown>)[key] : undefined), copy);
      for (const key of issue.keys) if (isObject(holder) && Object.hasOwn(holder, key) && delete holder[key]) dropped++;
    }
    if (dropped === 0) return parsed;
    parsed = schema.safeParse(copy);
    if (parsed.success) return parsed;
  }
}

/**
 * Checks the version of a message parsed from JSON and validates it (see
 * parseFromPeer); `protocol` itself is not part of the result.
 * @throws ProtocolVersionError for another MAJOR, DecodeError (source, the
 * first issue's path) for anything else that does not fit the schema.
 */
export function decodeFromPeer<S extends z.ZodType>(schema: S, source: string, value: unknown): z.output<S> {
  const sender = senderVersion(source, kindOf(schema, "message"), value);
  const body = isObject(value) && "protocol" in value ? withoutProtocol(value) : value;
  const parsed = parseFromPeer(schema, body, sender);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DecodeError(source, issue.path.join("."), issue.message);
  }
  return parsed.data;
}

function withoutProtocol(value: Record<string, unknown>): Record<string, unknown> {
  const { protocol: _version, ...rest } = value;
  return rest;
}

/** The message kind a schema decodes, for messages: its `kind` literal when it has one, else `fallback`. */
function kindOf(schema: z.ZodType, fallback: string): string {
  const shape = (schema as unknown as { shape?: Record<string, { def?: { type?: string; values?: unknown[] } }> }).shape;
  const def = shape?.kind?.def;
  return def?.type === "literal" && typeof def.values?.[0] === "string" ? def.values[0] : fallback;
}
