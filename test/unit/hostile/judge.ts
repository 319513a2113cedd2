/**
 * What every hostile case must show: refused with InventoryError (nothing
 * else thrown, no hang), at least one problem, each naming a file inside the
 * site folder at line >= 1, col >= 1, printed (formatProblem, and the
 * error's message) as exactly one line with no raw control or bidi
 * character, and nothing from outside the folder echoed (the secret
 * marker, the secret's path). Loading may not read a large
 * amount into memory (a device or an oversize file read whole).
 */
import { isAbsolute, normalize } from "node:path";
import { formatProblem } from "@netfleet/shared";
import type { CaseResult } from "./supervise.ts";

/**
 * Characters no message may print raw: C0 controls (newline, ESC, TAB...),
 * DEL, C1 controls (NEL, the 8-bit CSI), bidi marks, embeddings, overrides
 * and isolates (Unicode TR9), and the Unicode line and paragraph separators.
 */
export const UNSAFE_CHAR = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** Memory a refusal may take: far above parsing any inventory under the size cap, far below reading a device. */
export const MAX_RSS_GROWTH_KIB = 256 * 1024;

/**
 * Longest problem line accepted: a message quotes the offending token,
 * shortened, never a file's content (a 3 MB token echoed whole floods a CI
 * log). Far above any real line (a 255-byte file name escaped is about 1 KiB).
 */
export const MAX_LINE_CHARS = 2_000;

/** `s` with every unsafe character shown as \uXXXX, for failure messages. */
export function visible(s: string): string {
  return s.replace(new RegExp(UNSAFE_CHAR.source, "gu"), (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Why `r` is not an acceptable refusal; empty when it is. At most a few reasons (the first offending problems). */
export function judge(r: CaseResult | undefined, leaks: { marker: string; secretDir: string }): string[] {
  if (r === undefined) return ["no result (the loading process never reached this case)"];
  if (r.outcome === "accepted") return ["accepted: loadInventory returned an inventory (validate would exit 0)"];
  if (r.outcome === "hung" || r.outcome === "crashed") return [`${r.outcome}: ${visible(r.error ?? "")}`];
  const reasons: string[] = [];
  const problems = r.problems ?? [];
  if (problems.length === 0) reasons.push("InventoryError without any problem");
  for (const p of problems) {
    const line = formatProblem(p);
    const why: string[] = [];
    if (typeof p.file !== "string" || p.file === "" || isAbsolute(p.file) || normalize(p.file).startsWith("..")) why.push(`file ${JSON.stringify(p.file)} is not inside the site folder`);
    if (!Number.isInteger(p.line) || p.line < 1 || !Number.isInteger(p.col) || p.col < 1) why.push(`no position (line ${p.line}, col ${p.col})`);
    if (UNSAFE_CHAR.test(line)) why.push("raw control/bidi character in the message");
    if (line.length > MAX_LINE_CHARS) why.push(`a ${line.length}-character line (input echoed beyond the offending token)`);
    if (line.includes(leaks.marker)) why.push("the secret file's marker is echoed");
    if (line.includes(leaks.secretDir)) why.push("the path outside the folder is echoed");
    if (why.length > 0) reasons.push(`${why.join("; ")}: ${visible(line).slice(0, 300)}`);
    if (reasons.length >= 3) break;
  }
  // The error's own message (what a caller printing the error shows): one line per problem, each clean.
  const lines = (r.message ?? "").split("\n");
  if (r.message !== undefined && lines.length !== problems.length) reasons.push(`the error message has ${lines.length} lines for ${problems.length} problems`);
  const raw = lines.find((l) => UNSAFE_CHAR.test(l));
  if (raw !== undefined) reasons.push(`raw control/bidi character in the error message: ${visible(raw).slice(0, 300)}`);
  if ((r.message ?? "").includes(leaks.marker) && !reasons.some((x) => x.includes("marker"))) reasons.push("the secret file's marker is in the error message");
  if ((r.rssGrowthKiB ?? 0) > MAX_RSS_GROWTH_KIB) reasons.push(`read ${Math.round((r.rssGrowthKiB ?? 0) / 1024)} MiB into memory before refusing (a device or an oversize file read whole)`);
  return reasons;
}
