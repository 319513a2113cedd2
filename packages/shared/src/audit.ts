import { isIPv6 } from "node:net";
import { z } from "zod";
import { Ipv4Address } from "./ipv4.ts";
import { DNS_LABEL, MAC_ADDRESS, NETWORK_NAME } from "./names.ts";

/**
 * Gateway audit: what the backend's firewall logged for a network (nft
 * `log prefix "nf allow <network> " group G` on new outbound connections it
 * accepts, `nf drop <network> ` on what it refuses), as the backend's agent
 * reads it from nflog group G and publishes it to the site's audit stream.
 */

/** One IPv6 address in RFC 5952 form as Node prints it (lowercase hex, `::`). */
const ipv6 = z.string().max(45).refine((s) => isIPv6(s) && s === s.toLowerCase(), { message: "must be an IPv6 address (lowercase)" });
const address = z.union([Ipv4Address, ipv6]);
const port = z.number().int().min(0).max(65535);

/**
 * One logged packet: the first packet of a connection the gateway let out
 * (`allow`), or a packet it dropped (`drop`).
 * - `time`: when the kernel logged it (the pcap record's timestamp), ISO 8601 UTC with ms.
 * - `src`/`dst`: IPv4 dotted quad or IPv6 (RFC 5952 as Node formats it).
 * - `proto`: `tcp`, `udp`, `icmp`, `icmpv6`, or `ip-<n>` for any other IP protocol number n.
 * - `sport`/`dport`: TCP/UDP ports (absent for other protocols or a truncated header).
 * - `icmp`: ICMP/ICMPv6 type and code (RFC 792, RFC 4443).
 * - `mac`: the frame's source MAC when the kernel had it (NFULA_HWADDR: the
 *   sending VM for traffic from the network's side), lowercase.
 */
export const AuditRecord = z.strictObject({
  time: z.iso.datetime(),
  network: z.string().regex(NETWORK_NAME),
  verdict: z.enum(["allow", "drop"]),
  src: address,
  dst: address,
  proto: z.string().regex(/^(?:tcp|udp|icmp|icmpv6|ip-\d{1,3})$/),
  sport: port.optional(),
  dport: port.optional(),
  icmp: z.strictObject({ type: z.number().int().min(0).max(255), code: z.number().int().min(0).max(255) }).optional(),
  mac: z.string().regex(MAC_ADDRESS).optional(),
});

/** Most records in one published batch (a batch of full records stays well under 128 KiB). */
export const AUDIT_BATCH_MAX = 500;

/**
 * What a backend publishes on `nf.<site>.audit.<host>.<network>`: records of
 * one network, oldest first, and how many records its collector lost since
 * its previous batch (buffer full while NATS was away, or an unreadable
 * capture), so a gap in the audit is seen, not silent.
 */
export const AuditBatch = z.strictObject({
  kind: z.literal("audit"),
  site: z.string().regex(DNS_LABEL),
  host: z.string().regex(DNS_LABEL),
  network: z.string().regex(NETWORK_NAME),
  records: z.array(AuditRecord).max(AUDIT_BATCH_MAX),
  lost: z.number().int().min(0),
});

export type AuditRecord = z.output<typeof AuditRecord>;
export type AuditBatch = z.output<typeof AuditBatch>;

function token(kind: string, value: string, pattern: RegExp): string {
  if (!pattern.test(value)) throw new Error(`${kind} ${JSON.stringify(value)} is not valid in a subject`);
  return value;
}

/** The JetStream stream that keeps a site's audit batches (its limits are the rotation). */
export function auditStream(site: string): string {
  return `nf_${token("site", site, DNS_LABEL)}_audit`;
}

/**
 * Subject of one backend's audit batches for one network; `*` for host or
 * network gives the controller's wildcard filters. Network names never hold
 * a `.` (NETWORK_NAME), so each is one subject token.
 */
export function auditSubject(site: string, host: string, network: string): string {
  const h = host === "*" ? host : token("host", host, DNS_LABEL);
  const n = network === "*" ? network : token("network", network, NETWORK_NAME);
  return `nf.${token("site", site, DNS_LABEL)}.audit.${h}.${n}`;
}

/** Host and network of an audit subject, or undefined when the subject is not one. */
export function parseAuditSubject(subject: string): { site: string; host: string; network: string } | undefined {
  const parts = subject.split(".");
  if (parts.length !== 5 || parts[0] !== "nf" || parts[2] !== "audit") return undefined;
  const [, site, , host, network] = parts as [string, string, string, string, string];
  return DNS_LABEL.test(site) && DNS_LABEL.test(host) && NETWORK_NAME.test(network) ? { site, host, network } : undefined;
}
