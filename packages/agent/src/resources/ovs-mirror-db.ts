import { ParseError } from "@netfleet/shared";
import { atom, mapOf, setOf, tableRows as rows, type OvsdbTable as Table } from "./ovsdb-json.ts";
import type { ObserveContext, PlanContext } from "./types.ts";

/**
 * The OVS Mirror table as `ovs-vsctl --format=json list` prints it (OVSDB
 * JSON, ovsdb(7)), with the bridge each row hangs on (Bridge `mirrors`
 * column). Columns from ovs-vswitchd.conf.db(5), table Mirror. Pure parser;
 * throws ParseError. Real output: __fixtures__/ovs-mirror/capture.sh.
 */

/** The external_ids key of the owner mark on a tunnel port a mirror outputs to (value: the site). */
export const MIRROR_PORT_KEY = "netfleet-mirror";

/** One Mirror row. Port references are Port row UUIDs. */
export interface MirrorRow {
  uuid: string;
  name: string;
  /** The bridge whose `mirrors` column holds it (absent: none, a row about to be garbage-collected). */
  bridge?: string;
  selectAll: boolean;
  selectSrcPorts: string[];
  selectDstPorts: string[];
  outputPort?: string;
  outputVlan?: number;
  externalIds: Record<string, string>;
}

/** The one read of the Mirror table: Bridge (name, mirrors) and Mirror, the columns we look at. */
export function mirrorsObserveArgv(ctx: PlanContext): string[] {
  return ctx.tools.ovsVsctl(
    "--format=json",
    "--",
    "--columns=_uuid,name,mirrors",
    "list",
    "Bridge",
    "--",
    "--columns=_uuid,name,select_all,select_src_port,select_dst_port,output_port,output_vlan,external_ids",
    "list",
    "Mirror",
  );
}

/** Parses mirrorsObserveArgv's output: the Mirror rows, each with its bridge. @throws ParseError on anything else. */
export function parseMirrors(stdout: string): MirrorRow[] {
  const tables: Table[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.trim()) continue;
    try {
      const t = JSON.parse(line) as Table;
      if (!Array.isArray(t.headings) || !Array.isArray(t.data)) throw new Error("no headings/data");
      tables.push(t);
    } catch (err) {
      throw new ParseError("ovs-vsctl", `line ${tables.length + 1} is not an OVSDB table (${(err as Error).message})`, { cause: err });
    }
  }
  if (tables.length !== 2) throw new ParseError("ovs-vsctl", `expected 2 tables (Bridge, Mirror), got ${tables.length}`);
  const [bt, mt] = tables as [Table, Table];
  const bridgeOf = new Map<string, string>();
  for (const r of rows(bt, ["_uuid", "name", "mirrors"])) for (const m of setOf(r.mirrors)) bridgeOf.set(String(atom(m)), String(r.name));
  return rows(mt, ["_uuid", "name", "select_all", "select_src_port", "select_dst_port", "output_port", "output_vlan", "external_ids"])
    .map((r) => {
      const uuid = String(atom(r._uuid));
      const out = setOf(r.output_port);
      const vlan = setOf(r.output_vlan);
      const row: MirrorRow = {
        uuid,
        name: String(r.name),
        selectAll: r.select_all === true,
        selectSrcPorts: setOf(r.select_src_port).map((p) => String(atom(p))).sort(),
        selectDstPorts: setOf(r.select_dst_port).map((p) => String(atom(p))).sort(),
        externalIds: mapOf(r.external_ids),
      };
      const bridge = bridgeOf.get(uuid);
      if (bridge !== undefined) row.bridge = bridge;
      if (out.length > 0) row.outputPort = String(atom(out[0]));
      if (vlan.length > 0) row.outputVlan = Number(atom(vlan[0]));
      return row;
    })
    .sort((a, b) => a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid));
}

/** The Mirror table, read once per pass (the engine memoises reads by argv). */
export async function observeMirrors(ctx: ObserveContext): Promise<MirrorRow[]> {
  return parseMirrors((await ctx.read(mirrorsObserveArgv(ctx))).stdout);
}
