import { INTERFACE_NAME } from "../names.ts";

/**
 * Regular expressions for the JSON Schema of inventory files
 * (`inventoryJsonSchema()`), for rules the zod schema checks in code
 * (refine/check) and zod's converter therefore cannot carry over. Each one
 * accepts exactly the strings the code accepts (test/unit/json-schema-patterns.test.ts
 * compares them over every octet, prefix length and port), so an editor never
 * flags what `netfleet validate` takes. Written for ECMAScript regular
 * expressions with the `u` flag, as editors (yaml-language-server) and ajv
 * compile JSON Schema `pattern`s.
 */

/** 0-255 in decimal, no leading zero: what ipaddr.js' isValidFourPartDecimal takes. */
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";

const IPV4_BODY = `(?:${OCTET}\\.){3}${OCTET}`;

/** The octet values 0-255 that are multiples of `step` (a power of two), as an alternation. */
function multiplesOf(step: number): string {
  if (step === 256) return "0";
  // Even numbers are common enough (/31, /23, /15, /7) to deserve a short form.
  if (step === 2) return "(?:25[024]|2[0-4][02468]|1\\d[02468]|[1-9]?[02468])";
  const values: number[] = [];
  for (let v = 0; v < 256; v += step) values.push(v);
  return `(?:${values.join("|")})`;
}

/**
 * `a.b.c.d/len` with len 0-32 (one or two digits, as `parseIpv4Cidr` reads
 * it: `/08` is /8) and every host bit zero: for each prefix length the
 * octets before it are free, the octet it cuts is a multiple of
 * 2^(8 - len % 8), the octets after it are 0.
 */
function cidrBody(): string {
  const alternatives: string[] = [];
  for (let prefix = 0; prefix <= 32; prefix++) {
    const len = prefix < 10 ? `0?${prefix}` : String(prefix);
    if (prefix === 32) {
      alternatives.push(`${IPV4_BODY}/${len}`);
      continue;
    }
    const free = Math.floor(prefix / 8);
    const cut = multiplesOf(2 ** (8 - (prefix % 8)));
    const zeros = 3 - free;
    const head = free === 0 ? "" : free === 1 ? `${OCTET}\\.` : `(?:${OCTET}\\.){${free}}`;
    const tail = zeros === 0 ? "" : zeros === 1 ? "\\.0" : `(?:\\.0){${zeros}}`;
    alternatives.push(`${head}${cut}${tail}/${len}`);
  }
  return `(?:${alternatives.join("|")})`;
}

const CIDR_BODY = cidrBody();

/** An IPv4 address in dotted-quad form, each octet 0-255 without leading zeros. */
export const IPV4_PATTERN = `^${IPV4_BODY}$`;

/** An IPv4 network `a.b.c.d/len`, len 0-32, no host bits set. */
export const CIDR_PATTERN = `^${CIDR_BODY}$`;

/** An IPv4 address or network (as `CIDR_PATTERN`). */
export const CIDR_OR_ADDRESS_PATTERN = `^(?:${IPV4_BODY}|${CIDR_BODY})$`;

/**
 * An address or network lying wholly inside 169.254.0.0/16 (link-local,
 * RFC 3927), which every network is always denied: an allow entry there
 * could open nothing.
 */
export const LINK_LOCAL_PATTERN = `^169\\.254\\.${OCTET}\\.${OCTET}(?:/(?:1[6-9]|2\\d|3[0-2]))?$`;

/** 1-65535 written with up to 5 digits, leading zeros allowed (`parsePortRange` reads `\d{1,5}`). */
const PORT_DIGITS = "(?=\\d{1,5}(?!\\d))0*(?:6553[0-5]|655[0-2]\\d|65[0-4]\\d\\d|6[0-4]\\d{3}|[1-5]\\d{4}|[1-9]\\d{0,3})";

/**
 * The string form of a port or range, `"22"` or `"8000-8100"`, each end
 * 1-65535, surrounding white space allowed (`parsePortRange` trims). That
 * the range does not end before it starts is beyond a pattern of sane size.
 */
export const PORT_RANGE_PATTERN = `^\\s*${PORT_DIGITS}(?:-${PORT_DIGITS})?\\s*$`;

/** A NATS server URL, `nats://host:port` or `tls://host:port`, the port 1-65535 (the loader's NatsUrl). */
export const NATS_URL_PATTERN = `^(?:nats|tls)://[A-Za-z0-9.-]+:${PORT_DIGITS}$`;

/** A unicast MAC address: the least significant bit of the first octet (I/G bit, IEEE 802) is 0. */
export const UNICAST_MAC_PATTERN = "^[0-9a-fA-F][02468aceACE](?::[0-9a-fA-F]{2}){5}$";

/**
 * A lookahead refusing every word in `words` and every prefix of one (the
 * empty string aside): `^(?!(?:TRIE)$)`. Built as a trie so the pattern
 * stays small. For names iproute2 would read as one of its keywords.
 */
export function notWordOrPrefix(words: readonly string[]): string {
  interface Node {
    children: Map<string, Node>;
  }
  const root: Node = { children: new Map() };
  for (const word of words) {
    let node = root;
    for (const ch of word) {
      let next = node.children.get(ch);
      if (!next) node.children.set(ch, (next = { children: new Map() }));
      node = next;
    }
  }
  // Keywords hold a-z 0-9 _ -; `-` must stay unescaped outside a class under the `u` flag.
  const escape = (ch: string) => ch.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // Every node is accepting (a prefix counts), so each child's subtree is optional.
  const emit = (node: Node): string => {
    const parts = [...node.children.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([ch, child]) => (child.children.size === 0 ? escape(ch) : `${escape(ch)}${emit(child)}?`));
    return parts.length === 1 ? (parts[0]!.length === 1 ? parts[0]! : `(?:${parts[0]})`) : `(?:${parts.join("|")})`;
  };
  return `(?!${emit(root)}$)`;
}

/** `len` in the forms parseIpv4Cidr takes: `/8` or `/08`. */
function prefixText(len: number): string {
  return len < 10 ? `0?${len}` : String(len);
}

/**
 * An alternation matching every CIDR (host bits zero, as `CIDR_PATTERN`
 * checks) that overlaps one of `blocks`: one inside a block (its first
 * `block prefix` bits equal the block's, its prefix as long or longer), or
 * one holding a block (the block's network cut to a shorter prefix).
 */
export function overlappingCidrs(blocks: readonly string[]): string {
  const alternatives: string[] = [];
  for (const block of blocks) {
    const [addr, lenText] = block.split("/") as [string, string];
    const octets = addr.split(".").map(Number);
    const len = Number(lenText);
    const fixed = Math.floor(len / 8);
    const bits = len % 8;
    const parts = octets.map((o, i) => {
      if (i < fixed) return String(o);
      if (i === fixed && bits > 0) {
        const size = 2 ** (8 - bits);
        return `(?:${Array.from({ length: size }, (_, j) => o + j).join("|")})`;
      }
      return OCTET;
    });
    const longer = Array.from({ length: 33 - len }, (_, j) => prefixText(len + j)).join("|");
    alternatives.push(`${parts.join("\\.")}/(?:${longer})`);
    for (let p = 0; p < len; p++) {
      const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
      const value = (((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0) & mask;
      const text = [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join("\\.");
      alternatives.push(`${text}/${prefixText(p)}`);
    }
  }
  return `(?:${alternatives.join("|")})`;
}

/** A VM network's CIDR: `CIDR_PATTERN`, and no overlap with any of `blocks` (special-purpose space). */
export function networkCidrPattern(blocks: readonly string[]): string {
  return `^(?!${overlappingCidrs(blocks)}$)${CIDR_BODY}$`;
}

/**
 * An interface name (names.ts INTERFACE_NAME) that is neither one of
 * `reserved` nor an iproute2 keyword or a prefix of one (`keywords`).
 */
export function interfaceNamePattern(keywords: readonly string[], reserved: readonly string[] = []): string {
  const taken = reserved.length === 0 ? "" : `(?!(?:${reserved.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})$)`;
  return `^${notWordOrPrefix(keywords)}${taken}${INTERFACE_NAME.source.slice(1)}`;
}
