import { z } from "zod";
import { isIpv4 } from "../ipv4.ts";
import { json } from "./schema-fields.ts";
import { IPV4_PATTERN } from "./schema-patterns.ts";

/**
 * The site's `sflow:` and `ipfix:` settings: where every vmhost's VM network
 * bridges send packet samples, at what rate. They become rows of the OVS
 * sFlow and IPFIX tables (ovs-vswitchd.conf.db(5)) referenced from each
 * bridge's `sflow` / `ipfix` column.
 */

/** sFlow's registered collector port (IANA service name `sflow`, udp/6343). */
export const SFLOW_PORT = 6343;
/** IPFIX's registered collector port (RFC 7011 section 10.3.4, udp/4739). */
export const IPFIX_PORT = 4739;

/** A collector as written: an IPv4 address and its UDP port (the protocol's registered one when not given). */
export interface Collector {
  address: string;
  port: number;
}

const PORT_PART = "(?:6553[0-5]|655[0-2]\\d|65[0-4]\\d\\d|6[0-4]\\d{3}|[1-5]\\d{4}|[1-9]\\d{0,3})";
/** `a.b.c.d` or `a.b.c.d:port` (port 1-65535, no leading zero): what parseCollector takes. */
export const COLLECTOR_PATTERN = `^${IPV4_PATTERN.slice(1, -1)}(?::${PORT_PART})?$`;
const COLLECTOR_HELP = "must be a collector's IPv4 address, optionally with its UDP port: a.b.c.d or a.b.c.d:port (port 1-65535)";

/**
 * Reads `a.b.c.d[:port]`; a missing port is `defaultPort`. Returns the
 * collector, or undefined when the text is not that (a name, IPv6, a port
 * out of 1-65535 or with a leading zero). Pure.
 */
export function parseCollector(text: string, defaultPort: number): Collector | undefined {
  const m = /^([0-9.]+)(?::([1-9]\d{0,4}))?$/.exec(text);
  if (!m || !isIpv4(m[1]!)) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  return port >= 1 && port <= 65535 ? { address: m[1]!, port } : undefined;
}

const collector = json(z.string().refine((s) => parseCollector(s, 1) !== undefined, { message: COLLECTOR_HELP }), {
  pattern: COLLECTOR_PATTERN,
  patternErrorMessage: COLLECTOR_HELP,
});

const collectors = (protocol: string, port: number) =>
  z
    .array(collector.describe(`A collector: a.b.c.d or a.b.c.d:port (default port ${port}). Not a VM network's address, not loopback, multicast, broadcast or 0.0.0.0`))
    .min(1)
    .max(8)
    .describe(`Where each bridge sends ${protocol} (UDP), 1-8 collectors, each listed once; every host must reach them from its management address`);

const sampling = z
  .number()
  .int()
  .min(1)
  .max(4294967295)
  .default(400)
  .describe("Sample one packet in N on average, N 1-4294967295 (default 400, Open vSwitch's); 1 samples every packet");

/** `site.sflow`: the sFlow export of every VM network bridge (OVS sFlow table). */
export const SflowSettings = z.strictObject({
  collectors: collectors("sFlow datagrams", SFLOW_PORT),
  sampling,
  polling: z
    .number()
    .int()
    .min(1)
    .max(3600)
    .default(30)
    .describe("Seconds, 1-3600 (default 30, Open vSwitch's): how often each port's counters (ifIndex, octets, packets, errors) are sent"),
  header: z
    .number()
    .int()
    .min(18)
    .max(512)
    .default(128)
    .describe("Bytes, 18-512 (default 128, Open vSwitch's): how much of each sampled packet is sent, from its Ethernet header on"),
});

/** `site.ipfix`: the per-bridge IPFIX export of every VM network bridge (OVS IPFIX table). */
export const IpfixSettings = z.strictObject({
  collectors: collectors("IPFIX flow records", IPFIX_PORT),
  sampling,
  cache_active_timeout: z
    .number()
    .int()
    .min(0)
    .max(4200)
    .default(0)
    .describe("Seconds, 0-4200 (default 0: no cache, one record per sampled packet): how long Open vSwitch aggregates a flow's samples before sending its record"),
  cache_max_flows: z
    .number()
    .int()
    .min(0)
    .max(4294967295)
    .default(0)
    .describe("Flow records the cache holds at most, 0-4294967295 (default 0: no cache)"),
});

/** The sFlow settings as validated (defaults applied). */
export type SflowSettings = z.output<typeof SflowSettings>;
/** The IPFIX settings as validated (defaults applied). */
export type IpfixSettings = z.output<typeof IpfixSettings>;
