import { CORRECTIVE_MAX_VALUE_BYTES, CORRECTIVE_RECENT, encodeMessage, type CorrectiveChange, type CorrectiveLog, type FieldChange } from "@netfleet/shared";
import type { Changes, ResourceResult } from "../resources/types.ts";

/** A value's text is cut past this many characters (the schema allows 4000; 20 entries must fit one KV value). */
export const VALUE_CHARS = 600;
/** At most this many fields of one resource are kept; the rest are counted in a `[...]` field. */
export const MAX_FIELDS = 12;
/** The corrective changes a report carries take at most this many bytes of JSON (a report must fit NATS's 1 MiB max_payload). */
export const REPORT_CHANGES_BYTES = 64 * 1024;

/**
 * A change's value as text: a string as it is, a list of strings or
 * numbers one element a line, null/undefined as `(none)`, anything else
 * as JSON.
 */
export function valueText(value: unknown): string {
  if (value === null || value === undefined) return "(none)";
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number")) return value.join("\n");
  return JSON.stringify(value) ?? String(value);
}

/** `text` cut to `max` characters, ending in a marker that says how much was cut. */
export function cut(text: string, max = VALUE_CHARS): { text: string; cut: boolean } {
  if (text.length <= max) return { text, cut: false };
  const marker = `…[cut: ${text.length - max} more chars]`;
  return { text: text.slice(0, Math.max(0, max - marker.length)) + marker, cut: true };
}

/**
 * Two long multi-line texts reduced to the lines that differ: lines of
 * `before` that `after` lacks, and the reverse (each line counted as often
 * as it occurs), in order, after a marker line saying how many common
 * lines were left out. A drifted ruleset or set of elements then shows the
 * inserted or missing lines, not the first few hundred characters of both.
 */
export function differingLines(before: string, after: string): { before: string; after: string } {
  const a = before.split("\n");
  const b = after.split("\n");
  const count = (lines: string[]) => lines.reduce((m, l) => m.set(l, (m.get(l) ?? 0) + 1), new Map<string, number>());
  const only = (lines: string[], other: Map<string, number>) => {
    const left = new Map(other);
    return lines.filter((l) => {
      const n = left.get(l) ?? 0;
      if (n > 0) left.set(l, n - 1);
      return n === 0;
    });
  };
  const onlyBefore = only(a, count(b));
  const onlyAfter = only(b, count(a));
  const common = a.length - onlyBefore.length;
  const marker = `[${common} common line${common === 1 ? "" : "s"} not shown]`;
  return { before: [marker, ...onlyBefore].join("\n"), after: [marker, ...onlyAfter].join("\n") };
}

/**
 * A plan's changes as before/after texts: at most MAX_FIELDS fields (then a
 * `[...]` field counting the rest), each value at most VALUE_CHARS
 * characters; two multi-line values longer than that are first reduced to
 * their differing lines. `truncated` is set when anything was left out.
 */
export function fieldChanges(changes: Changes): { changes: FieldChange[]; truncated: boolean } {
  const entries = Object.entries(changes);
  let truncated = entries.length > MAX_FIELDS;
  const out: FieldChange[] = [];
  for (const [field, { old, new: next }] of entries.slice(0, MAX_FIELDS)) {
    let before = valueText(old);
    let after = valueText(next);
    if ((before.length > VALUE_CHARS || after.length > VALUE_CHARS) && before.includes("\n") && after.includes("\n")) {
      ({ before, after } = differingLines(before, after));
      truncated = true;
    }
    const b = cut(before);
    const a = cut(after);
    truncated ||= b.cut || a.cut;
    out.push({ field: cut(field, 200).text, before: b.text, after: a.text });
  }
  if (entries.length > MAX_FIELDS) out.push({ field: "[...]", before: "", after: `${entries.length - MAX_FIELDS} more fields not shown` });
  return { changes: out, truncated };
}

/** A repaired resource's result as a corrective change at `at` (ISO 8601). */
export function correctiveChange(result: Pick<ResourceResult, "id" | "changes">, at: string): CorrectiveChange {
  const { changes, truncated } = fieldChanges(result.changes);
  return { id: result.id.slice(0, 200), at, corrective: true, changes, ...(truncated ? { truncated: true } : {}) };
}

/**
 * The first changes whose JSON together fits `maxBytes` (default
 * REPORT_CHANGES_BYTES), in order; the report's `corrective` list still
 * names every repaired resource, and the host's log keeps them all.
 */
export function fitChanges(changes: readonly CorrectiveChange[], maxBytes = REPORT_CHANGES_BYTES): CorrectiveChange[] {
  const out: CorrectiveChange[] = [];
  let size = 2;
  for (const c of changes) {
    size += encodeMessage(c).length + 1;
    if (size > maxBytes) break;
    out.push(c);
  }
  return out;
}

/**
 * The log after `added` (oldest first) joined `previous`: count grows by
 * `added.length` (`extraCount` adds changes dropped before they could be
 * sent), `recent` keeps the last `keep`, and the oldest are dropped until
 * the encoded log fits `maxBytes` (one entry at least stays when it fits alone).
 */
export function nextLog(
  previous: CorrectiveLog | undefined,
  who: { site: string; host: string },
  added: readonly CorrectiveChange[],
  at: string,
  options: { keep?: number; maxBytes?: number; extraCount?: number } = {},
): CorrectiveLog {
  const keep = options.keep ?? CORRECTIVE_RECENT;
  const maxBytes = options.maxBytes ?? CORRECTIVE_MAX_VALUE_BYTES;
  const log: CorrectiveLog = {
    kind: "corrective-log",
    site: who.site,
    host: who.host,
    count: (previous?.count ?? 0) + added.length + (options.extraCount ?? 0),
    recent: [...(previous?.recent ?? []), ...added].slice(-keep),
    at,
  };
  while (log.recent.length > 0 && encodeMessage(log).length > maxBytes) log.recent.shift();
  return log;
}
