import { createInterface } from "node:readline/promises";
import { escapeText } from "@netfleet/shared";
import type { PlanFile } from "./plan-file.ts";
import type { RolloutSummary } from "./rollout.ts";

/** Where the question goes and the answer comes from: the terminal (process.stdin / process.stderr) or, in tests, streams. */
export interface Terminal {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

/**
 * Asks `question` followed by ` (y/N) ` and reads one line: true only for
 * `y` or `yes` (any case); anything else, an empty line or the end of the
 * input is no (the default, as apt and terraform do: nothing happens unless
 * the operator says so).
 */
export async function askYesNo(question: string, terminal: Terminal): Promise<boolean> {
  const rl = createInterface({ input: terminal.input, output: terminal.output, terminal: false });
  try {
    const closed = new Promise<string>((resolve) => rl.once("close", () => resolve("")));
    const answer = await Promise.race([rl.question(`${question} (y/N) `), closed]);
    return /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

/** The summary shown before the question of a rollout: hosts to change, waves, failure budget, hosts left alone. */
export function rolloutSummaryLine(s: RolloutSummary): string {
  const hosts = s.waves.flat().length;
  return `${hosts} host${hosts === 1 ? "" : "s"} to change in ${s.waves.length} wave${s.waves.length === 1 ? "" : "s"} (${s.waves.map((w) => w.length).join("+") || "0"}), failure budget ${s.maxFail}${s.unchanged.length ? `; ${s.unchanged.length} unchanged` : ""}`;
}

/** The lines summing up a plan file: per host what it brings (status, resources that change), then the totals. */
export function planSummaryLines(plan: PlanFile, file: string): string[] {
  // Everything from the file is escaped (escapeText): a control character in it never repaints the terminal at the question.
  const lines = [`plan ${escapeText(file)}: site ${plan.site}, made ${plan.createdAt}, ${plan.hosts.length} host${plan.hosts.length === 1 ? "" : "s"}`];
  for (const h of plan.hosts) {
    const what = h.changes.length ? `${h.changes.length} resource${h.changes.length === 1 ? "" : "s"} to change: ${h.changes.slice(0, 6).map((c) => escapeText(c.id)).join(" ")}${h.changes.length > 6 ? " ..." : ""}` : "nothing to change";
    lines.push(`  ${h.host} (${h.role}, ${h.status}${h.from ? ` from revision ${h.from.revision}` : ""}): ${what}`);
  }
  return lines;
}
