/**
 * How check mode prints what would change (netfleet-agent apply --check,
 * netfleet rollout --check): each field `name: old -> new`, then the
 * resource's unified diff. One renderer, so the agent and the controller
 * print a change the same way.
 */

/** A field's change as text (the wire's FieldChange): `before` what the host has, `after` what the plan makes. */
export interface ChangeText {
  field: string;
  before: string;
  after: string;
}

/**
 * A value as text: a string as it is, a list of strings or numbers one
 * element a line, null/undefined as `(none)`, anything else as JSON (the
 * agent's corrective.ts valueText, which the wire's FieldChange carries).
 */
export function changeValueText(value: unknown): string {
  if (value === null || value === undefined) return "(none)";
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || typeof v === "number")) return value.join("\n");
  return JSON.stringify(value) ?? String(value);
}

const lineCount = (text: string) => (text === "" || text === "(none)" ? 0 : text.split("\n").length);

/**
 * The lines check mode prints for one resource, unindented: each field as
 * `name: old -> new` when both values are one line; a field of many (or
 * no) lines as `name:` then its old lines `- ` and new lines `+ `, or,
 * when the resource has a unified diff (which shows them in context), as
 * `name: N lines -> M lines (in the diff below)` (also a line over 120
 * characters); then the diff's lines.
 * `changes`: the agent's `{ field: { old, new } }` or the wire's texts.
 * Control characters but tabs are printed escaped (escapeControls).
 */
export function renderChanges(changes: Record<string, { old: unknown; new: unknown }> | readonly ChangeText[], diff?: string): string[] {
  const fields: ChangeText[] = Array.isArray(changes)
    ? [...(changes as readonly ChangeText[])]
    : Object.entries(changes as Record<string, { old: unknown; new: unknown }>).map(([field, c]) => ({ field, before: changeValueText(c.old), after: changeValueText(c.new) }));
  const out: string[] = [];
  for (const { field, before, after } of fields) {
    // A list of lines (a field the diff shows in context) may be empty on one side.
    const lines = before.includes("\n") || after.includes("\n") || before === "" || after === "" || before.length > 120 || after.length > 120;
    if (!lines || (!diff && !before.includes("\n") && !after.includes("\n") && before !== "" && after !== "")) {
      out.push(`${field}: ${before} -> ${after}`);
    } else if (diff) {
      const n = (t: string) => `${lineCount(t)} line${lineCount(t) === 1 ? "" : "s"}`;
      out.push(`${field}: ${n(before)} -> ${n(after)} (in the diff below)`);
    } else {
      out.push(`${field}:`);
      if (before !== "(none)" && before !== "") for (const l of before.split("\n")) out.push(`  - ${l}`);
      if (after !== "(none)" && after !== "") for (const l of after.split("\n")) out.push(`  + ${l}`);
    }
  }
  if (diff) out.push(...diff.replace(/\n$/, "").split("\n"));
  return out.map(escapeControls);
}

/** Control characters but the tab (C0, DEL, C1) and the bidirectional overrides, which could rewrite a terminal line. */
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * A line as it may be printed: each control character (an agent's text is
 * not trusted to be clean: ESC, CR, ...) as `\u00XX`; tabs kept (nft
 * listings are indented with them).
 */
export function escapeControls(line: string): string {
  return line.replace(CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
