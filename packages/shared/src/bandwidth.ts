/**
 * Bandwidth quantities as the inventory writes them: a rate in bit/s or a
 * burst in bits, a number with an SI suffix, 1000-based as tc(8) reads
 * them ("kbit Kilobits per second", "mbit", "gbit", "tbit"; its units are
 * case-insensitive): `50Mbit` is 50,000,000 bit/s, `500kbit` 500,000,
 * `1.5Gbit` 1,500,000,000. A bare number (YAML integer or digits) is bit/s
 * (or bits). tc's byte units (`bps`, `kbps`, `kb`, `mb`...) are refused:
 * `kbps` reads as kilobits to most people but is kilobytes to tc, and
 * OVS's `ingress_policing_rate` is in kbps meaning kilobits: one unit word,
 * three meanings, so the inventory takes bits only.
 *
 * VM-centric directions, as Neutron QoS rules and libvirt's
 * `<bandwidth>` (formatdomain): `egress` is what the VM sends, `ingress`
 * what the VM receives.
 */

/** One direction's limit, resolved: `rate` in bit/s, `burst` in bits (both positive integers). */
export interface BandwidthLimit {
  rate: number;
  burst: number;
}

/** A VM's limits, VM-centric: `egress` = what it sends, `ingress` = what it receives; a missing side is unlimited. */
export interface Bandwidth {
  egress?: BandwidthLimit;
  ingress?: BandwidthLimit;
}

/** The two directions, in the order they are shown. */
export const BANDWIDTH_DIRECTIONS = ["egress", "ingress"] as const;
/** A direction of a VM's traffic: egress (it sends) or ingress (it receives). */
export type BandwidthDirection = (typeof BANDWIDTH_DIRECTIONS)[number];

/** Largest rate or burst accepted: 1 Tbit (beyond any NIC the sites run, far inside a safe integer). */
export const BANDWIDTH_MAX = 1e12;

const MULTIPLIERS: Record<string, number> = { "": 1, bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12 };
const BYTE_UNITS = new Set(["b", "bps", "kbps", "mbps", "gbps", "tbps", "kb", "mb", "gb", "tb", "k", "m", "g", "t", "byte", "bytes"]);
const QUANTITY = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/;

/** How a rate is written, for messages and descriptions. */
export const RATE_HELP = "a rate in bit/s: a number with kbit, Mbit, Gbit or Tbit (1000-based, as tc(8)), e.g. 50Mbit, 500kbit, 1.5Gbit";
/** How a burst is written. */
export const BURST_HELP = "a size in bits: a number with kbit, Mbit or Gbit (1000-based), e.g. 1Mbit, 500kbit";

/**
 * Parses a rate (bit/s) or a burst (bits): `50Mbit` -> 50000000. Returns the
 * integer, or a message saying what is wrong (never throws): not a number
 * with a bit unit, a byte unit, 0, a fraction of a bit, above `BANDWIDTH_MAX`.
 * `kind` names the quantity in the message.
 */
export function parseBits(value: string | number, kind: "rate" | "burst" = "rate"): number | string {
  const help = kind === "rate" ? RATE_HELP : BURST_HELP;
  const text = String(value);
  const m = QUANTITY.exec(text);
  if (!m) return `must be ${help}`;
  const unit = m[2]!.toLowerCase();
  const multiplier = MULTIPLIERS[unit];
  if (multiplier === undefined) {
    if (BYTE_UNITS.has(unit)) return `${quote(value)} is in bytes; write bits (${kind === "rate" ? "kbit, Mbit, Gbit: 8 Mbit/s is 1 MB/s" : "kbit, Mbit: 8 Mbit is 1 MB"})`;
    return `unknown unit ${quote(m[2]!)}: must be ${help}`;
  }
  // Scale in decimal to avoid float error: "1.1Mbit" is 1100000 exactly.
  const [whole, frac = ""] = m[1]!.split(".");
  const digits = Math.round(Math.log10(multiplier));
  if (frac.length > digits) return `${quote(value)} is not a whole number of bits${kind === "rate" ? " per second" : ""}`;
  const bits = Number(whole) * multiplier + (frac === "" ? 0 : Number(frac.padEnd(digits, "0")));
  if (bits === 0) return kind === "rate" ? "a rate of 0 passes nothing; leave the direction out for no limit" : "a burst of 0 passes nothing";
  if (!Number.isSafeInteger(bits) || bits > BANDWIDTH_MAX) return `${quote(value)} is above ${formatBits(BANDWIDTH_MAX)}`;
  return bits;
}

/** `parseBits` for a value already validated by the schema: throws `RangeError` with its message otherwise. */
export function bitsOf(value: string | number, kind: "rate" | "burst" = "rate"): number {
  const n = parseBits(value, kind);
  if (typeof n === "string") throw new RangeError(n);
  return n;
}

/**
 * Bits (or bit/s) in the largest unit that keeps it whole: 50000000 ->
 * `50Mbit`, 1500000 -> `1500kbit`, 1234 -> `1234bit`. What `parseBits` reads back.
 */
export function formatBits(bits: number): string {
  for (const [unit, m] of [["Tbit", 1e12], ["Gbit", 1e9], ["Mbit", 1e6], ["kbit", 1e3]] as const) {
    if (bits >= m && bits % m === 0) return `${bits / m}${unit}`;
  }
  return `${bits}bit`;
}

/** A limit for people: `50Mbit/s burst 1Mbit`. */
export function formatLimit(limit: BandwidthLimit): string {
  return `${formatBits(limit.rate)}/s burst ${formatBits(limit.burst)}`;
}

function quote(value: string | number): string {
  return JSON.stringify(String(value).slice(0, 40));
}
