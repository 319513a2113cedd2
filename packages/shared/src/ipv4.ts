import ipaddr from "ipaddr.js";
import { z } from "zod";
import { quoteToken } from "./errors.ts";

/**
 * IPv4 arithmetic on top of ipaddr.js (which parses and validates strictly:
 * no octal, no short forms), reduced to unsigned 32-bit integers so ranges
 * and overlaps are plain comparisons.
 */
export interface Ipv4Cidr {
  text: string;
  network: number;
  prefix: number;
  /** First and last address of the block (network and broadcast). */
  first: number;
  last: number;
}

export function isIpv4(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

export function ipv4ToInt(text: string): number {
  const bytes = ipaddr.IPv4.parse(text).toByteArray();
  return ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Parses `a.b.c.d/len`; returns an error message instead of throwing. */
export function parseIpv4Cidr(text: string): Ipv4Cidr | string {
  const slash = text.indexOf("/");
  if (slash < 0) return `${quoteToken(text)} is not a CIDR (expected a.b.c.d/len)`;
  const addr = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (!isIpv4(addr)) return `${quoteToken(addr)} is not an IPv4 address`;
  if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) return `prefix length ${quoteToken(lenText)} is not 0-32`;
  const prefix = Number(lenText);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const value = ipv4ToInt(addr);
  const network = (value & mask) >>> 0;
  if (network !== value) {
    return `${text} has host bits set; the network is ${intToIpv4(network)}/${prefix}`;
  }
  return { text, network, prefix, first: network, last: (network | (~mask >>> 0)) >>> 0 };
}

export function cidrContains(cidr: Ipv4Cidr, address: number): boolean {
  return address >= cidr.first && address <= cidr.last;
}

export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  return a.first <= b.last && b.first <= a.last;
}

export function netmask(prefix: number): string {
  return intToIpv4(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
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
