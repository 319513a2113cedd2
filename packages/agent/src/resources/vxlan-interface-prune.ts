import { ParseError, type PruneSpec } from "@netfleet/shared";
import { z } from "zod";
import { ExecError, mutate, type Command } from "../exec/runner.ts";
import type { Changes, ObserveContext } from "./types.ts";
import { filterIsOurs, observeFilter } from "./vxlan-interface-filter.ts";

/**
 * Prune's part for the VXLAN devices' source filters (vxlan-interface-filter.ts):
 * the table `inet netfleet-<device>` of a device prune no longer keeps goes
 * with the device, and only when its rule carries our owner mark.
 */

/** The filter tables' prefix: `netfleet-` and the device's name (`vx-<network>`). */
const FILTER_TABLE = /^netfleet-(vx-[a-z][a-z0-9-]*)$/;

const Tables = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });
const TableRow = z.looseObject({ family: z.string(), name: z.string() });

/**
 * The filter tables of `nft -j list ruleset` (or `list tables`; nft 1.0.6
 * JSON: `{"nftables": [{"metainfo": …}, {"table": {"family", "name",
 * "handle"}}, {"chain": …}, …]}`), by device.
 * @throws ParseError on other output.
 */
export function parseFilterTables(stdout: string): { table: string; device: string }[] {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout);
  } catch {
    throw new ParseError("nft -j list ruleset", "not JSON");
  }
  const doc = Tables.safeParse(raw);
  if (!doc.success) throw new ParseError("nft -j list ruleset", "no nftables list");
  const out: { table: string; device: string }[] = [];
  for (const item of doc.data.nftables) {
    const t = TableRow.safeParse(item.table);
    if (!t.success || t.data.family !== "inet") continue;
    const m = FILTER_TABLE.exec(t.data.name);
    if (m) out.push({ table: t.data.name, device: m[1]! });
  }
  return out.sort((a, b) => a.table.localeCompare(b.table));
}

/**
 * Our filter tables of devices not in `spec.keep.links` (from `nft -j list
 * ruleset`, the pass's one JSON read of nft shared with prune's and the
 * nft-table resource's, then one listing per such table to check the
 * mark). None on a host without nft (we would have made them with it).
 */
export async function observeStaleVxlanFilters(spec: PruneSpec, ctx: ObserveContext): Promise<string[]> {
  let out;
  try {
    out = await ctx.read(["nft", "-j", "list", "ruleset"], { allowFailure: true });
  } catch (err) {
    if (err instanceof ExecError && err.exitCode === 127 && /\bENOENT\b/.test(err.stderr)) return [];
    throw err;
  }
  if (out.exitCode !== 0) throw new Error(`nft -j list ruleset exited ${out.exitCode}: ${out.stderr.trim()}`);
  const stale: string[] = [];
  for (const t of parseFilterTables(out.stdout)) {
    if (spec.keep.links.includes(t.device)) continue;
    if (filterIsOurs(await observeFilter(t.device, ctx), ctx.owner)) stale.push(t.table);
  }
  return stale;
}

/** `nft delete table inet NAME` per stale table; changes recorded as `nft-table inet NAME`. */
export function pruneVxlanFiltersCommands(stale: readonly string[] | undefined, changes: Changes): Command[] {
  return (stale ?? []).map((table) => {
    changes[`nft-table inet ${table}`] = { old: "present", new: null };
    return mutate(["nft", "delete", "table", "inet", table]);
  });
}
