/**
 * Port numbers and inclusive port ranges as an inventory writes them: a
 * number (`22`) or a string range (`"8000-8100"`). TCP and UDP ports are
 * 16-bit and port 0 is reserved (RFC 793, RFC 768; IANA), so 1-65535.
 */

/** An inclusive port range; `first` <= `last`, both 1-65535. A single port has first === last. */
export interface PortRange {
  first: number;
  last: number;
}

/** The lowest and highest port a TCP or UDP service may use. */
export const PORT_MIN = 1;
export const PORT_MAX = 65535;

/**
 * Parses `22`, `"22"` or `"8000-8100"`. Returns the range, or an error
 * message (never throws): out of 1-65535, first > last, or not a port.
 */
export function parsePortRange(value: unknown): PortRange | string {
  const help = 'must be a port 1-65535 or a range "first-last" such as "8000-8100"';
  let first: number;
  let last: number;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return help;
    first = last = value;
  } else if (typeof value === "string") {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(value.trim());
    if (!m) return help;
    first = Number(m[1]);
    last = m[2] === undefined ? first : Number(m[2]);
  } else {
    return help;
  }
  for (const p of [first, last]) if (p < PORT_MIN || p > PORT_MAX) return `port ${p} is outside 1-65535`;
  if (first > last) return `port range ${first}-${last} ends before it starts`;
  return { first, last };
}

/** `22` or `8000-8100`. */
export function formatPortRange(r: PortRange): string {
  return r.first === r.last ? String(r.first) : `${r.first}-${r.last}`;
}

/** Whether two inclusive ranges share a port. */
export function portRangesOverlap(a: PortRange, b: PortRange): boolean {
  return a.first <= b.last && b.first <= a.last;
}

/**
 * gateway_services / reserved_ports entries (already validated by the
 * schema) as one { proto, first, last } per port or range, deduplicated,
 * sorted by protocol, then port.
 */
export function resolvePortSets(sets: readonly { proto: "tcp" | "udp"; ports: readonly (number | string)[] }[]): { proto: "tcp" | "udp"; first: number; last: number }[] {
  const out = sets.flatMap((set) => set.ports.map((p) => ({ proto: set.proto, ...(parsePortRange(p) as PortRange) })));
  const unique = [...new Map(out.map((x) => [`${x.proto}/${x.first}-${x.last}`, x])).values()];
  return unique.sort((a, b) => a.proto.localeCompare(b.proto) || a.first - b.first || a.last - b.last);
}
