/**
 * OpenFlow rules in the text form `ovs-ofctl` prints (dump-flows) and
 * reads (add-flow, bundle): parsing, formatting, and a rule's identity
 * (table, priority, match; ovs-fields(7)).
 */

/** One OpenFlow rule in table 0, in the form ovs-ofctl prints and reads. */
export interface Flow {
  /** OpenFlow table: 0 (ingress policy, the default) or 1 (forwarding). */
  table?: number;
  priority: number;
  /** Match fields, e.g. `ip`, `in_port=3`, `dl_src=52:54:00:aa:00:01`. */
  match: string[];
  actions: string;
  /** `0x…` as dump-flows prints it; absent in desired flows (they all carry the spec's cookie) and when 0. */
  cookie?: string;
}

/** Counters and metadata that ovs-ofctl prints but that are not part of a rule's identity. */
const VOLATILE = /^(duration|n_packets|n_bytes|idle_age|hard_age|reset_counts|send_flow_rem|importance|idle_timeout|hard_timeout)=?/;

/** A rule's identity: table, priority and its match fields in any order (what `delete_strict` names). */
export function flowKey(f: Flow): string {
  return `${f.table ?? 0}|${f.priority}|${[...f.match].sort().join(",")}`;
}

/** The rule's match as ovs-ofctl reads it: `table=1,` when not table 0, then priority and fields. */
export function matchText(f: Flow): string {
  return [...(f.table ? [`table=${f.table}`] : []), `priority=${f.priority}`, ...f.match].join(",");
}

/** The rule as `ovs-ofctl add-flow` reads it: match, then actions. */
export function formatFlow(f: Flow): string {
  return `${matchText(f)} actions=${f.actions}`;
}

/** Parses `ovs-ofctl dump-flows [--no-stats]` (with or without stats); keeps each rule's cookie. */
export function parseFlows(text: string): Flow[] {
  const flows: Flow[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("OFPST_") || line.startsWith("NXST_")) continue;
    const at = line.lastIndexOf(" actions=");
    if (at < 0) continue;
    const actions = line.slice(at + " actions=".length).trim();
    let priority = 32768;
    let table = 0;
    let cookie: string | undefined;
    const match: string[] = [];
    // Fields are comma-separated, but flags stand alone before the priority: OpenFlow 1.3 prints
    // `cookie=0x1234, reset_counts priority=500,in_port=2` for a rule added with OpenFlow 1.0 defaults.
    for (const token of line.slice(0, at).split(/[,\s]+/).filter(Boolean)) {
      if (token.startsWith("priority=")) priority = Number(token.slice("priority=".length));
      else if (token.startsWith("table=")) table = Number(token.slice("table=".length));
      else if (token.startsWith("cookie=")) cookie = token.slice("cookie=".length);
      else if (!VOLATILE.test(token)) match.push(token);
    }
    const flow: Flow = { priority, match, actions };
    if (table !== 0) flow.table = table;
    if (cookie !== undefined && cookie !== "0x0") flow.cookie = cookie;
    flows.push(flow);
  }
  return flows;
}
