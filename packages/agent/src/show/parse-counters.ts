import { z } from "zod";
import { ParseError, type LinkCounters, type ShowOvsBond } from "@netfleet/shared";
import { parseJson } from "../resources/tool-json.ts";

/**
 * Pure parsers of what show reads for counters and bonds (OVS 3.1):
 * `ovs-vsctl --format=json list Interface` with the statistics columns,
 * `ovs-appctl bond/show` and `ovs-appctl lacp/show` (all bonds at once).
 * Each throws ParseError naming the tool. Driven by captures of a real OVS
 * (__fixtures__/counters, see its capture.sh).
 */

/** The columns show reads for counters (ovs-vswitchd.conf.db(5), Interface table). */
export const INTERFACE_STATS_COLUMNS = ["name", "statistics", "link_state", "admin_state", "link_resets"] as const;

/** One Interface's run state and counters, by the Interface table's columns. */
export interface InterfaceStats {
  counters?: LinkCounters;
  linkState?: string;
  adminState?: string;
  linkResets?: number;
}

// OVSDB JSON: an empty optional column is `["set", []]`, a map `["map", [[k, v], ...]]`.
const Cell = z.union([z.string(), z.number(), z.boolean(), z.tuple([z.string(), z.array(z.unknown())])]);
const Table = z.object({ headings: z.array(z.string()), data: z.array(z.array(Cell)) });

function scalar(v: z.output<typeof Cell> | undefined): string | number | undefined {
  if (typeof v === "string" || typeof v === "number") return v;
  return undefined;
}

/**
 * Parses `ovs-vsctl --format=json --columns=name,statistics,link_state,admin_state,link_resets list Interface`,
 * by Interface name. `counters` only when the statistics map holds all eight keys LinkCounters needs
 * (rx/tx_packets, _bytes, _dropped, _errors); an OVS that keeps fewer for a port says nothing about it.
 * Throws ParseError.
 */
export function parseInterfaceStats(stdout: string): Map<string, InterfaceStats> {
  const tool = "ovs-vsctl list Interface (statistics)";
  const table = parseJson(tool, stdout, Table);
  const col = (h: string) => table.headings.indexOf(h);
  const [iName, iStats, iLink, iAdmin, iResets] = INTERFACE_STATS_COLUMNS.map(col);
  if (iName === -1 || iStats === -1) throw new ParseError(tool, "no name or statistics column");
  const out = new Map<string, InterfaceStats>();
  for (const row of table.data) {
    const name = scalar(row[iName!]);
    if (typeof name !== "string") throw new ParseError(tool, "an Interface row without a name");
    const s: InterfaceStats = {};
    const stats = row[iStats!];
    if (Array.isArray(stats) && stats[0] === "map") {
      const m = new Map<string, number>();
      for (const pair of stats[1]) if (Array.isArray(pair) && typeof pair[0] === "string" && typeof pair[1] === "number") m.set(pair[0], pair[1]);
      const keys = ["rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped"];
      if (keys.every((k) => m.has(k))) {
        s.counters = {
          rxBytes: m.get("rx_bytes")!,
          rxPackets: m.get("rx_packets")!,
          rxErrors: m.get("rx_errors")!,
          rxDropped: m.get("rx_dropped")!,
          txBytes: m.get("tx_bytes")!,
          txPackets: m.get("tx_packets")!,
          txErrors: m.get("tx_errors")!,
          txDropped: m.get("tx_dropped")!,
        };
      }
    }
    const link = iLink === -1 ? undefined : scalar(row[iLink!]);
    const admin = iAdmin === -1 ? undefined : scalar(row[iAdmin!]);
    const resets = iResets === -1 ? undefined : scalar(row[iResets!]);
    if (typeof link === "string") s.linkState = link;
    if (typeof admin === "string") s.adminState = admin;
    if (typeof resets === "number" && resets >= 0) s.linkResets = resets;
    out.set(name, s);
  }
  return out;
}

/**
 * Parses `ovs-appctl bond/show` (every bond: `---- NAME ----` blocks with
 * `lacp_status:`, `active member mac: MAC(NAME)` and `member NAME:
 * enabled|disabled` followed by indented `may_enable:`; OVS before 2.16
 * says `slave`), by bond (Port) name. Empty output: no bonds.
 * Throws ParseError for a block without `bond_mode:`.
 */
export function parseBondShow(text: string): Map<string, ShowOvsBond> {
  const out = new Map<string, ShowOvsBond>();
  for (const block of text.split(/^(?=---- \S+ ----$)/m)) {
    const head = /^---- (\S+) ----$/m.exec(block);
    if (!head) continue;
    if (!/^bond_mode: /m.test(block)) throw new ParseError("ovs-appctl bond/show", `bond ${head[1]}: no bond_mode line`);
    const bond: ShowOvsBond = { members: [] };
    const lacp = /^lacp_status: (\S+)$/m.exec(block)?.[1];
    if (lacp !== undefined) bond.lacpStatus = lacp;
    const active = /^active (?:member|slave) mac: \S+\(([^)]+)\)$/m.exec(block)?.[1];
    if (active !== undefined && active !== "none") bond.activeMember = active;
    for (const m of block.matchAll(/^(?:member|slave) (\S+): (enabled|disabled)\n((?:[ \t]+.*(?:\n|$))*)/gm)) {
      bond.members.push({ name: m[1]!, enabled: m[2] === "enabled", mayEnable: /^\s*may_enable: true$/m.test(m[3] ?? "") });
    }
    out.set(head[1]!, bond);
  }
  return out;
}

/** One bond's LACP as lacp/show prints it: its status words, and each member's status and actor/partner state words. */
export interface LacpShow {
  status: string[];
  members: Map<string, { status: string[]; actorState: string[]; partnerState: string[] }>;
}

/**
 * Parses `ovs-appctl lacp/show` (every LACP port: `---- NAME ----`,
 * `status: active negotiated`, then per member `member: NAME: current
 * attached` with `actor state:` and `partner state:` lines of IEEE 802.1AX
 * state words), by port name. Empty output: no LACP port. Throws ParseError
 * for a block without `status:`.
 */
export function parseLacpShow(text: string): Map<string, LacpShow> {
  const words = (s: string | undefined) => (s ?? "").split(/\s+/).filter(Boolean);
  const out = new Map<string, LacpShow>();
  for (const block of text.split(/^(?=---- \S+ ----$)/m)) {
    const head = /^---- (\S+) ----$/m.exec(block);
    if (!head) continue;
    const status = /^\s*status: (.*)$/m.exec(block)?.[1];
    if (status === undefined) throw new ParseError("ovs-appctl lacp/show", `port ${head[1]}: no status line`);
    const show: LacpShow = { status: words(status), members: new Map() };
    for (const part of block.split(/^(?=(?:member|slave): )/m).slice(1)) {
      const m = /^(?:member|slave): ([^\s:]+): ?(.*)$/m.exec(part);
      if (!m) continue;
      show.members.set(m[1]!, {
        status: words(m[2]),
        actorState: words(/^\s*actor state: ?(.*)$/m.exec(part)?.[1]),
        partnerState: words(/^\s*partner state: ?(.*)$/m.exec(part)?.[1]),
      });
    }
    out.set(head[1]!, show);
  }
  return out;
}

/** A bond's state with its members' LACP words folded in (from lacp/show of the same port). */
export function withLacp(bond: ShowOvsBond, lacp: LacpShow | undefined): ShowOvsBond {
  if (!lacp) return bond;
  return {
    ...bond,
    members: bond.members.map((m) => {
      const l = lacp.members.get(m.name);
      return l ? { ...m, lacpStatus: l.status.slice(0, 8), actorState: l.actorState.slice(0, 16), partnerState: l.partnerState.slice(0, 16) } : m;
    }),
  };
}
