import { ParseError } from "@netfleet/shared";
import { atom, mapOf, optional, setOf } from "./ovsdb-json.ts";
import type { ObserveContext, PlanContext } from "./types.ts";

/**
 * The OVS database rows packet sampling lives in (ovs-vswitchd.conf.db(5)):
 * each Bridge's `sflow` and `ipfix` columns, and the sFlow and IPFIX rows
 * they reference, as one `ovs-vsctl --format=json` call prints them
 * (OVSDB JSON, ovsdb(7)). Pure parser; throws ParseError.
 */

/** A Bridge row, reduced to its sampling columns. */
export interface SamplingBridge {
  uuid: string;
  name: string;
  /** uuid of the sFlow row the bridge's `sflow` column references. */
  sflow?: string;
  /** uuid of the IPFIX row the bridge's `ipfix` column references. */
  ipfix?: string;
  externalIds: Record<string, string>;
}

/** An sFlow row; an unset optional column is undefined (OVS then uses its default). */
export interface SflowRow {
  uuid: string;
  agent?: string;
  /** `ip:port`, sorted. */
  targets: string[];
  sampling?: number;
  polling?: number;
  header?: number;
  externalIds: Record<string, string>;
}

/** An IPFIX row (per-bridge sampling columns). */
export interface IpfixRow {
  uuid: string;
  /** `ip:port`, sorted. */
  targets: string[];
  sampling?: number;
  cacheActiveTimeout?: number;
  cacheMaxFlows?: number;
  externalIds: Record<string, string>;
}

/** What sampling reads of the OVS database. */
export interface SamplingState {
  bridges: Map<string, SamplingBridge>;
  /** sFlow rows by uuid. */
  sflow: Map<string, SflowRow>;
  /** IPFIX rows by uuid. */
  ipfix: Map<string, IpfixRow>;
}

/** The one read-only call: Bridge (sampling columns), sFlow and IPFIX (see __fixtures__/ovs/SAMPLING.md). */
export function samplingObserveArgv(ctx: PlanContext): string[] {
  return ctx.tools.ovsVsctl(
    "--format=json",
    "--",
    "--columns=_uuid,name,sflow,ipfix,external_ids",
    "list",
    "Bridge",
    "--",
    "--columns=_uuid,agent,targets,sampling,polling,header,external_ids",
    "list",
    "sFlow",
    "--",
    "--columns=_uuid,targets,sampling,cache_active_timeout,cache_max_flows,external_ids",
    "list",
    "IPFIX",
  );
}

type Value = unknown;

const optionalNumber = (v: Value) => {
  const x = optional(v);
  return x === undefined ? undefined : Number(x);
};

function rowsOf(line: string, index: number, wanted: string[]): Record<string, Value>[] {
  let table: { headings?: unknown; data?: unknown };
  try {
    table = JSON.parse(line) as typeof table;
  } catch (err) {
    throw new ParseError("ovs-vsctl", `line ${index + 1} is not an OVSDB table (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(table.headings) || !Array.isArray(table.data)) throw new ParseError("ovs-vsctl", `line ${index + 1} has no headings/data`);
  const headings = table.headings as string[];
  for (const w of wanted) if (!headings.includes(w)) throw new ParseError("ovs-vsctl", `column ${w} missing (got ${headings.join(",")})`);
  return (table.data as Value[][]).map((row) => Object.fromEntries(headings.map((h, i) => [h, row[i]])));
}

/** Parses samplingObserveArgv's three tables (Bridge, sFlow, IPFIX, one JSON object per line). Throws ParseError. */
export function parseSamplingState(stdout: string): SamplingState {
  const lines = stdout.split("\n").filter((l) => l.trim() !== "");
  if (lines.length !== 3) throw new ParseError("ovs-vsctl", `expected 3 tables (Bridge, sFlow, IPFIX), got ${lines.length}`);
  const bridges = new Map<string, SamplingBridge>();
  for (const r of rowsOf(lines[0]!, 0, ["_uuid", "name", "sflow", "ipfix", "external_ids"])) {
    const b: SamplingBridge = { uuid: String(atom(r._uuid)), name: String(r.name), externalIds: mapOf(r.external_ids) };
    const sflow = optional(r.sflow);
    const ipfix = optional(r.ipfix);
    if (sflow !== undefined) b.sflow = String(sflow);
    if (ipfix !== undefined) b.ipfix = String(ipfix);
    bridges.set(b.name, b);
  }
  const sflow = new Map<string, SflowRow>();
  for (const r of rowsOf(lines[1]!, 1, ["_uuid", "agent", "targets", "sampling", "polling", "header", "external_ids"])) {
    const row: SflowRow = { uuid: String(atom(r._uuid)), targets: setOf(r.targets).map((t) => String(atom(t))).sort(), externalIds: mapOf(r.external_ids) };
    const agent = optional(r.agent);
    if (agent !== undefined) row.agent = String(agent);
    for (const [key, column] of [["sampling", "sampling"], ["polling", "polling"], ["header", "header"]] as const) {
      const n = optionalNumber(r[column]);
      if (n !== undefined) row[key] = n;
    }
    sflow.set(row.uuid, row);
  }
  const ipfix = new Map<string, IpfixRow>();
  for (const r of rowsOf(lines[2]!, 2, ["_uuid", "targets", "sampling", "cache_active_timeout", "cache_max_flows", "external_ids"])) {
    const row: IpfixRow = { uuid: String(atom(r._uuid)), targets: setOf(r.targets).map((t) => String(atom(t))).sort(), externalIds: mapOf(r.external_ids) };
    for (const [key, column] of [["sampling", "sampling"], ["cacheActiveTimeout", "cache_active_timeout"], ["cacheMaxFlows", "cache_max_flows"]] as const) {
      const n = optionalNumber(r[column]);
      if (n !== undefined) row[key] = n;
    }
    ipfix.set(row.uuid, row);
  }
  return { bridges, sflow, ipfix };
}

/** No bridge, no row (a fresh install). */
export const emptySamplingState = (): SamplingState => ({ bridges: new Map(), sflow: new Map(), ipfix: new Map() });

/** The sampling rows, read once per pass (memoised by the engine). */
export async function observeSampling(ctx: ObserveContext): Promise<SamplingState> {
  return parseSamplingState((await ctx.read(samplingObserveArgv(ctx))).stdout);
}
