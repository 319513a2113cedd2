import { createTwoFilesPatch, diffArrays } from "diff";

export { changeValueText, escapeControls, renderChanges, type ChangeText } from "./diff-render.ts";

/**
 * Unified diffs of the texts check mode shows (the nft ruleset, dnsmasq's
 * files, libvirt network XML, OpenFlow rules), made with jsdiff (the `diff`
 * package: Myers' O(ND) algorithm, GNU unified format).
 */

/** Context lines around each hunk, as `diff -u` (3). */
export const DIFF_CONTEXT = 3;

/**
 * The unified diff from `before` (what the host has; undefined: no such
 * text, e.g. the file does not exist) to `after` (what netfleet wants):
 * `--- <label.before>` and `+++ <label.after>` headers, then `@@` hunks with
 * DIFF_CONTEXT lines of context, as `diff -u` prints them (a missing final
 * newline marked `\ No newline at end of file`). "" when both are the same.
 */
export function unifiedDiff(before: string | undefined, after: string | undefined, label: { before: string; after: string }, context = DIFF_CONTEXT): string {
  if ((before ?? "") === (after ?? "")) return "";
  const patch = createTwoFilesPatch(label.before, label.after, before ?? "", after ?? "", undefined, undefined, { context });
  // jsdiff starts with a line of "=" (its Index: separator); `diff -u` does not.
  return patch.replace(/^=+\n/, "");
}

/**
 * The lines only one side has, in order (a line moved within the text is
 * on both sides): what a change's `{ old, new }` carries for a text whose
 * whole diff is in `diff`. Empty lines are left out.
 */
export function changedLines(before: string | undefined, after: string | undefined): { old: string[]; new: string[] } {
  const split = (t: string | undefined) => (t ?? "").split("\n").filter((l) => l.trim() !== "");
  const out = { old: [] as string[], new: [] as string[] };
  for (const part of diffArrays(split(before), split(after))) {
    if (part.removed) out.old.push(...part.value);
    else if (part.added) out.new.push(...part.value);
  }
  return out;
}

/** Characters of a resource's diff that a check reply carries (CheckReply.results[].diff), marker included. */
export const DIFF_MAX_CHARS = 32_000;

/**
 * `diff` cut at a line boundary to at most `max` characters, ending in a
 * line that says how many lines were left out; as it is when it fits.
 */
export function cutDiff(diff: string, max = DIFF_MAX_CHARS): string {
  if (diff.length <= max) return diff;
  const lines = diff.replace(/\n$/, "").split("\n");
  const marker = (n: number) => `[... ${n} more diff lines not shown: netfleet-agent apply --check on the host shows them all]`;
  let size = marker(lines.length).length + 1;
  let kept = 0;
  while (kept < lines.length && size + lines[kept]!.length + 1 <= max) size += lines[kept++]!.length + 1;
  return [...lines.slice(0, kept), marker(lines.length - kept)].join("\n");
}
