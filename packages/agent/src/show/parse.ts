import { z } from "zod";
import type { LinkCounters, ShowFlow, ShowNftCounter } from "@netfleet/shared";
import { parseFlows } from "../resources/openflow.ts";
import { parseJson } from "../resources/tool-json.ts";

/**
 * What `show` reads besides what the resources read: the counters and run
 * state the resources leave out (they compare what must not drift). Pure
 * parsers of the tools' output; each throws ParseError naming the tool.
 */

const Stats = z.object({ bytes: z.number(), packets: z.number(), errors: z.number(), dropped: z.number() });

const LinkExtras = z.array(
  z.object({
    ifname: z.string(),
    operstate: z.string().optional(),
    stats64: z.object({ rx: Stats, tx: Stats }).optional(),
    linkinfo: z.object({ info_slave_data: z.object({ state: z.string().optional(), mii_status: z.string().optional() }).optional() }).optional(),
  }),
);

/** Per link of `ip -s -details -json link show` (iproute2 6.1): operstate, counters (stats64), a bond member's state. */
export interface LinkExtra {
  state?: string;
  counters?: LinkCounters;
  member?: { state?: string; mii?: string };
}

/** Parses the run state and counters of `ip -s -details -json link show`, by link name. Throws ParseError. */
export function parseLinkExtras(stdout: string): Map<string, LinkExtra> {
  const out = new Map<string, LinkExtra>();
  for (const row of parseJson("ip -s -details -json link show", stdout, LinkExtras)) {
    const extra: LinkExtra = {};
    if (row.operstate !== undefined) extra.state = row.operstate;
    const s = row.stats64;
    if (s) {
      extra.counters = {
        rxBytes: s.rx.bytes,
        rxPackets: s.rx.packets,
        rxErrors: s.rx.errors,
        rxDropped: s.rx.dropped,
        txBytes: s.tx.bytes,
        txPackets: s.tx.packets,
        txErrors: s.tx.errors,
        txDropped: s.tx.dropped,
      };
    }
    const member = row.linkinfo?.info_slave_data;
    if (member && (member.state !== undefined || member.mii_status !== undefined)) {
      extra.member = {};
      if (member.state !== undefined) extra.member.state = member.state;
      if (member.mii_status !== undefined) extra.member.mii = member.mii_status;
    }
    out.set(row.ifname, extra);
  }
  return out;
}

/**
 * Parses `ovs-ofctl dump-flows BRIDGE` (with stats, as OVS 3.1 prints it):
 * each rule as openflow.ts parseFlows reads it, with its `n_packets` and
 * `n_bytes` (ovs-ofctl(8), "Flow Syntax"; 0 when not printed).
 */
export function parseFlowsWithStats(text: string): ShowFlow[] {
  const out: ShowFlow[] = [];
  for (const line of text.split("\n")) {
    const [flow] = parseFlows(line);
    if (!flow) continue;
    const packets = /\bn_packets=(\d+)/.exec(line);
    const bytes = /\bn_bytes=(\d+)/.exec(line);
    const f: ShowFlow = { table: flow.table ?? 0, priority: flow.priority, match: flow.match.join(","), actions: flow.actions, packets: Number(packets?.[1] ?? 0), bytes: Number(bytes?.[1] ?? 0) };
    if (flow.cookie !== undefined) f.cookie = flow.cookie;
    out.push(f);
  }
  return out;
}

/**
 * The rules of `nft list table inet netfleet` (nft 1.0.6 text) that count
 * (`counter packets N bytes M`), with their chain; the rule as printed,
 * its handle comment dropped and its counter values moved to `packets`/`bytes`. Set element lists are skipped.
 */
export function parseNftCounters(text: string): ShowNftCounter[] {
  const out: ShowNftCounter[] = [];
  let chain: string | undefined;
  let inElements = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (inElements) {
      if (line.endsWith("}")) inElements = false;
      continue;
    }
    if (line.startsWith("elements = {")) {
      inElements = !line.endsWith("}");
      continue;
    }
    const head = /^(set|map|chain|flowtable) (\S+) \{$/.exec(line);
    if (head) {
      chain = head[1] === "chain" ? head[2] : undefined;
      continue;
    }
    if (line === "}") {
      chain = undefined;
      continue;
    }
    const m = /\bcounter packets (\d+) bytes (\d+)/.exec(line);
    if (!chain || !m) continue;
    out.push({ chain, rule: line.replace(/ # handle \d+$/, "").replace(/\bcounter packets \d+ bytes \d+/, "counter"), packets: Number(m[1]), bytes: Number(m[2]) });
  }
  return out;
}

/**
 * Host names in a dnsmasq lease file (`<expiry> <mac> <ip> <hostname|*>
 * <client-id|*>`, dnsmasq's lease.c), by lowercase MAC; `*` (none) left out.
 * The leases themselves are read by shared parseDnsmasqLeases.
 */
export function dnsmasqHostnames(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const [, mac, ip, name] = line.trim().split(/\s+/);
    if (mac && ip && !ip.includes(":") && name && name !== "*") out.set(mac.toLowerCase(), name);
  }
  return out;
}
