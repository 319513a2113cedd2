import ipaddr from "ipaddr.js";
import { z } from "zod";
import { quoteToken } from "./errors.ts";

/**
 * IPv4 addresses and CIDR blocks. ipaddr.js parses and validates them
 * (strictly here: four decimal octets, no octal or short forms) and gives a
 * block's network, broadcast address and netmask. What it lacks is kept
 * here: a block as unsigned 32-bit integers, so that overlaps, "wholly
 * inside" and address ranges (DHCP ranges, port-range forwards) are plain
 * comparisons and sums.
 */
export interface Ipv4Cidr {
  /** As written: `a.b.c.d/len`. */
  text: string;
  /** The network address, an unsigned 32-bit integer. */
  network: number;
  /** Prefix length, 0-32. */
  prefix: number;
  /** First and last address of the block (network and broadcast), unsigned 32-bit integers. */
  first: number;
  last: number;
}

/** Whether `text` is a dotted-quad IPv4 address: four decimal octets 0-255 without leading zeros (`10.0.0.1`, not `010.0.0.1` or `10.1`). */
export function isIpv4(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

/** An address as an unsigned 32-bit integer. Throws ipaddr.js' error when `text` is not an address (check it with `isIpv4` first). */
export function ipv4ToInt(text: string): number {
  return toInt(ipaddr.IPv4.parse(text));
}

/** The dotted quad of an unsigned 32-bit integer (0 to 2^32 - 1). */
export function intToIpv4(n: number): string {
  return ipaddr.fromByteArray([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]).toString();
}

function toInt(address: ipaddr.IPv4): number {
  const [a, b, c, d] = address.toByteArray() as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/**
 * Parses a network `a.b.c.d/len`: a valid address, a prefix length 0-32,
 * no host bits set. Returns the block, or an error message saying which
 * part is wrong (never throws).
 */
export function parseIpv4Cidr(text: string): Ipv4Cidr | string {
  const slash = text.indexOf("/");
  if (slash < 0) return `${quoteToken(text)} is not a CIDR (expected a.b.c.d/len)`;
  const addr = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (!isIpv4(addr)) return `${quoteToken(addr)} is not an IPv4 address`;
  if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) return `prefix length ${quoteToken(lenText)} is not 0-32`;
  const prefix = Number(lenText);
  const network = ipaddr.IPv4.networkAddressFromCIDR(text);
  if (network.toString() !== addr) return `${text} has host bits set; the network is ${network.toString()}/${prefix}`;
  const first = toInt(network);
  return { text, network: first, prefix, first, last: toInt(ipaddr.IPv4.broadcastAddressFromCIDR(text)) };
}

/**
 * An address or a network as egress and allow lists write them (`10.0.0.5`
 * or `10.0.0.0/24`): an address is its /32. Returns the block or
 * `parseIpv4Cidr`'s error message.
 */
export function parseIpv4Block(text: string): Ipv4Cidr | string {
  return parseIpv4Cidr(text.includes("/") ? text : `${text}/32`);
}

/** Whether the integer address `address` (see `ipv4ToInt`) lies in `cidr`. */
export function cidrContains(cidr: Ipv4Cidr, address: number): boolean {
  return address >= cidr.first && address <= cidr.last;
}

/** Whether `inner` lies wholly inside `outer` (an equal block does). */
export function cidrWithin(inner: Ipv4Cidr, outer: Ipv4Cidr): boolean {
  return outer.first <= inner.first && inner.last <= outer.last;
}

/** Whether two blocks share an address. */
export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.first <= b.last && b.first <= a.last;
}

/** The netmask of a prefix length 0-32 as a dotted quad (24 -> `255.255.255.0`), as dnsmasq's dhcp-range takes it. */
export function netmask(prefix: number): string {
  return ipaddr.IPv4.subnetMaskFromPrefixLength(prefix).toString();
}

/**
 * A dotted-quad IPv4 address as a zod schema, for every decode boundary
 * (assignments, NATS messages, agent config): four decimal octets 0-255,
 * no octal or short forms (ipaddr.js `isValidFourPartDecimal`). A loose
 * `\d{1,3}` pattern would let `999.1.1.1` reach `ip addr add`.
 */
export const Ipv4Address = z.string().refine(isIpv4, "must be an IPv4 address a.b.c.d (octets 0-255)");

/** `a.b.c.d/len` with a valid address and a prefix of 0-32 (host bits may be set: an interface address). */
export const Ipv4Interface = z.string().refine((text) => {
  const slash = text.indexOf("/");
  return slash > 0 && isIpv4(text.slice(0, slash)) && /^(?:\d|[12]\d|3[0-2])$/.test(text.slice(slash + 1));
}, "must be an IPv4 address with prefix length a.b.c.d/len (len 0-32)");
