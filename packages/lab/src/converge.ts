import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HostAssignment } from "@netfleet/shared";
import { agentCommand, agentDaemonPid, labHost } from "./agents.ts";
import { LabExec, sleep } from "./exec.ts";
import type { AgentSummary, LabState } from "./state.ts";
import type { TopoHost } from "./topology.ts";
import type { LabOptions } from "./types.ts";

/** What a lab host's agent runs need: the lab, its compiled assignments, the state that records the runs, the progress log. */
export interface ConvergeContext {
  o: LabOptions;
  state: LabState;
  assignments: Map<string, HostAssignment>;
  step: (what: string) => void;
}

/**
 * `netfleet-agent apply` (or `apply --check`) of the host's assignment file,
 * its JSON output kept beside the file (`.apply.json`, `.check.json`) and its
 * summary recorded in the state. Throws with the failed results unless it
 * exits 0 (a check that finds changes to make but no failure is an answer).
 */
async function runAgent(c: ConvergeContext, h: TopoHost, check = false): Promise<AgentSummary | undefined> {
  const a = c.assignments.get(h.name);
  if (!a) throw new Error(`no assignment compiled for host ${h.name}`);
  const r = await new LabExec(120_000).probe(agentCommand(c.o, labHost(h), ["apply", "--assignment", h.assignmentFile, "--name", h.name, "--json", ...(check ? ["--check"] : [])]));
  const outFile = h.assignmentFile.replace(/\.json$/, check ? ".check.json" : ".apply.json");
  writeFileSync(outFile, r.stdout);
  let parsed: { summary?: AgentSummary; wallMs?: number; results?: { id: string; result: boolean | null; error?: string; comment?: string }[] } | undefined;
  try {
    parsed = JSON.parse(r.stdout) as typeof parsed;
  } catch {
    /* reported below */
  }
  c.state.agents[h.name] = { exitCode: r.exitCode, summary: parsed?.summary, wallMs: parsed?.wallMs, ...(check ? { check: true } : {}) };
  if (r.exitCode !== 0 && !(check && parsed?.summary && parsed.summary.failed === 0)) {
    const failed = (parsed?.results ?? []).filter((x) => x.result === false).map((x) => `  ${x.id}: ${x.error ?? x.comment ?? "failed"}`);
    const body = parsed ? failed.join("\n") : `--- stdout:\n${r.stdout}`;
    throw new Error(
      `netfleet-agent apply${check ? " --check" : ""} on ${h.name} exited ${r.exitCode} (full output: ${outFile})\n${body}${r.stderr.trim() ? `\n--- stderr:\n${r.stderr.trim()}` : ""}`,
    );
  }
  c.step(`agent ${h.name}${check ? " (check)" : ""}: ${JSON.stringify(parsed?.summary)} (${parsed?.wallMs} ms inside)`);
  return parsed?.summary;
}

/** A host whose agent daemon runs is left to it: wait (bounded, 60 s) until a check finds nothing to do. */
export async function converged(c: ConvergeContext, h: TopoHost): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    const s = await runAgent(c, h, true);
    if (s && s.pending === 0 && s.failed === 0) return;
    if (Date.now() > until) throw new Error(`the agent daemon on ${h.name} did not converge within 60 s (see ${join(h.agentDir, "agent.log")})`);
    await sleep(500);
  }
}

/** Brings a host to its assignment: left to its agent daemon when one runs, else one `netfleet-agent apply`. */
export async function converge(c: ConvergeContext, h: TopoHost): Promise<void> {
  if (agentDaemonPid(c.o, h) !== undefined) await converged(c, h);
  else await runAgent(c, h);
}
