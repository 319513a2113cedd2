import { ParseError } from "@netfleet/shared";

/**
 * The value shapes of `ovs-vsctl --format=json` output (RFC 7047 §5.1, the
 * OVSDB wire format as ovs-vsctl prints it): an atom (string, integer, real,
 * boolean, `["uuid", "…"]`), a set (`["set", [...]]`, a one-element set
 * printed bare), a map (`["map", [[k, v], ...]]`). One reader for every
 * table our resources read (ovsdb.ts, ovs-mirror-db.ts, ovs-sampling-db.ts).
 */
export type OvsdbValue = unknown;

/** A set's elements: `["set", [...]]`, or the one bare element. */
export function setOf(v: OvsdbValue): OvsdbValue[] {
  if (Array.isArray(v) && v[0] === "set") return v[1] as OvsdbValue[];
  return [v];
}

/** One atom; a uuid (or named-uuid) as its string. @throws ParseError on anything else. */
export function atom(v: OvsdbValue): string | number | boolean {
  if (Array.isArray(v) && (v[0] === "uuid" || v[0] === "named-uuid")) return String(v[1]);
  if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") return v;
  throw new ParseError("ovs-vsctl", `unexpected OVSDB atom ${JSON.stringify(v)}`);
}

/** An optional column (a set of 0 or 1 atoms): the atom, or undefined. @throws ParseError as atom. */
export function optional(v: OvsdbValue): string | number | boolean | undefined {
  const items = setOf(v);
  return items.length === 0 ? undefined : atom(items[0]);
}

/** A map column as string keys and values. @throws ParseError when `v` is not a map. */
export function mapOf(v: OvsdbValue): Record<string, string> {
  if (!Array.isArray(v) || v[0] !== "map" || !Array.isArray(v[1])) {
    throw new ParseError("ovs-vsctl", `expected an OVSDB map, got ${JSON.stringify(v)}`);
  }
  return Object.fromEntries((v[1] as [OvsdbValue, OvsdbValue][]).map(([k, val]) => [String(atom(k)), String(atom(val))]));
}

/** One table of `ovs-vsctl --format=json list`: its column headings and rows. */
export interface OvsdbTable {
  headings: string[];
  data: OvsdbValue[][];
}

/** A table's rows as heading → value records. @throws ParseError when a `wanted` column is missing. */
export function tableRows(table: OvsdbTable, wanted: string[]): Record<string, OvsdbValue>[] {
  for (const w of wanted) {
    if (!table.headings.includes(w)) throw new ParseError("ovs-vsctl", `column ${w} missing (got ${table.headings.join(",")})`);
  }
  return table.data.map((row) => Object.fromEntries(table.headings.map((h, i) => [h, row[i]])));
}
