import { cidrContains, intToIpv4, ipv4ToInt, parseIpv4Cidr, type Ipv4Cidr } from "@netfleet/shared";

/**
 * An address of `cidrText` that is neither in `taken` nor the network or
 * broadcast address, searched downwards from just below `below` (default:
 * the broadcast address). Throws when there is none.
 */
export function unusedAddress(cidrText: string, taken: string[], below?: string): string {
  const cidr = parseIpv4Cidr(cidrText) as Ipv4Cidr;
  const used = new Set(taken.filter(Boolean).map(ipv4ToInt));
  const top = below ? ipv4ToInt(below) - 1 : cidr.last - 1;
  for (let n = top; n > cidr.first; n--) if (!used.has(n) && cidrContains(cidr, n)) return intToIpv4(n);
  throw new Error(`no free address in ${cidrText}`);
}
