/**
 * The agent's own cost on one host, measured inside that host's namespace:
 *
 *   ip netns exec NS node agent-cost.ts --assignment FILE --runs N [tool options]
 *
 * runs the agent's reconcile (the same engine `netfleet-agent apply` runs)
 * N times in one process (as the daemon does: what it keeps between passes,
 * such as the OVSDB monitor's cache, is kept here too) and prints one JSON
 * line per run: wall time, commands run, how many mutated something, the
 * summed time of the commands themselves, and each command's own time (so
 * the bench says which command costs what).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ExecaRunner, reconcile, summarize, Toolbox } from "@netfleet/agent";
import { decodeAssignment } from "@netfleet/shared";

/** One command of a run: its argv as run, whether it mutates, its wall time in ms (0.1 ms steps). */
export interface CommandCost {
  argv: string[];
  mutating: boolean;
  ms: number;
}

/** One reconcile pass: wall ms, commands run, mutating ones, summed command ms, results changed/failed, each command. */
export interface CostRun {
  wallMs: number;
  commands: number;
  mutatingCommands: number;
  commandMs: number;
  changed: number;
  failed: number;
  perCommand?: CommandCost[];
}

const { values } = parseArgs({
  options: {
    assignment: { type: "string" },
    runs: { type: "string", default: "1" },
    "ovs-db": { type: "string" },
    "ovs-rundir": { type: "string" },
    "libvirt-uri": { type: "string" },
    "run-dir": { type: "string" },
    verbose: { type: "boolean", default: false },
  },
});
if (!values.assignment) throw new Error("--assignment FILE is required");
const assignment = decodeAssignment(values.assignment, readFileSync(values.assignment, "utf8"));
const tools = new Toolbox({
  ...(values["ovs-db"] ? { ovsDb: values["ovs-db"] } : {}),
  ...(values["ovs-rundir"] ? { ovsRundir: values["ovs-rundir"] } : {}),
  ...(values["libvirt-uri"] ? { libvirtUri: values["libvirt-uri"] } : {}),
  ...(values["run-dir"] ? { runDir: values["run-dir"] } : {}),
});
const runs = Math.min(Math.max(Number(values.runs), 1), 50);
const round = (n: number) => Math.round(n * 10) / 10;
try {
  for (let i = 0; i < runs; i++) {
    const runner = new ExecaRunner();
    const t = performance.now();
    const results = await reconcile(assignment.resources, { runner, tools, owner: assignment.site });
    const wallMs = performance.now() - t;
    const s = summarize(results);
    const run: CostRun = {
      wallMs: round(wallMs),
      commands: runner.log.length,
      mutatingCommands: runner.log.filter((l) => l.command.mutating).length,
      commandMs: round(runner.log.reduce((sum, l) => sum + l.result.durationMs, 0)),
      changed: s.changed,
      failed: s.failed,
      perCommand: runner.log.map((l) => ({ argv: l.command.argv, mutating: l.command.mutating, ms: round(l.result.durationMs) })),
    };
    process.stdout.write(JSON.stringify(run) + "\n");
    if (values.verbose) for (const l of runner.log) process.stderr.write(`${l.result.durationMs.toFixed(1).padStart(7)} ms  ${l.command.argv.join(" ")}\n`);
  }
} finally {
  // (nothing to close yet)
}
