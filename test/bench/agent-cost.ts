/**
 * The agent's own cost on one host, measured inside that host's namespace:
 *
 *   ip netns exec NS node agent-cost.ts --assignment FILE --runs N [tool options]
 *
 * runs the agent's reconcile (the same engine `netfleet-agent apply` runs)
 * N times in one process (as the daemon does: what it keeps between passes,
 * ObserveContext.carry, is kept here too) and prints one JSON
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

/**
 * One read of the last pass run again alone, `times` times one after the
 * other (no other command of the pass competing for the CPU): median wall
 * ms, and mean CPU ms of the agent's process and of the command's process
 * (0 for reads answered in-process: the database socket, /proc/sys).
 */
export interface ReplayCost {
  argv: string[];
  wallMs: number;
  agentCpuMs: number;
  childCpuMs: number;
}

/** One reconcile pass: wall ms, CPU ms, commands run, mutating ones, summed command ms, results changed/failed, each command. */
export interface CostRun {
  wallMs: number;
  /** CPU of the agent's own process over the pass (process.cpuUsage, user + system), ms. */
  agentCpuMs?: number;
  /** CPU of the commands it started and waited for (/proc/self/stat cutime + cstime, 10 ms ticks), ms. */
  childCpuMs?: number;
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
    replay: { type: "string", default: "0" },
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
/** CPU ms of this process (user + system). */
const ownCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
/** CPU ms of the children this process has waited for (proc(5): fields 16 and 17 of /proc/self/stat, in clock ticks of 1/100 s on Linux). */
const childCpu = () => {
  const fields = readFileSync("/proc/self/stat", "utf8").replace(/^.*\) /s, "").split(" ");
  // After "pid (comm) ", field 3 (state) is index 0: cutime (16) is index 13, cstime (17) index 14.
  return (Number(fields[13]) + Number(fields[14])) * 10;
};
let last: ExecaRunner | undefined;
// What the daemon keeps from pass to pass (ObserveContext.carry): the runs are its passes.
const carry = new Map<string, unknown>();
try {
  for (let i = 0; i < runs; i++) {
    const runner = new ExecaRunner();
    last = runner;
    const t = performance.now();
    const cpu0 = ownCpu();
    const child0 = childCpu();
    const results = await reconcile(assignment.resources, { runner, tools, owner: assignment.site, carry });
    const wallMs = performance.now() - t;
    const s = summarize(results);
    const run: CostRun = {
      wallMs: round(wallMs),
      agentCpuMs: round(ownCpu() - cpu0),
      childCpuMs: childCpu() - child0,
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
  // Each command of the last pass alone (--replay N: N times each), so the table says what a command
  // costs by itself rather than how long it waited behind the others of the pass.
  const times = Math.min(Math.max(Number(values.replay), 0), 50);
  if (times > 0 && last) {
    const seen = new Set<string>();
    for (const entry of last.log) {
      const command = entry.command;
      const key = JSON.stringify(command.argv);
      if (command.mutating || seen.has(key)) continue;
      seen.add(key);
      const walls: number[] = [];
      let agentCpu = 0;
      let children = 0;
      for (let k = 0; k < times; k++) {
        const runner = new ExecaRunner();
        const t = performance.now();
        const cpu0 = ownCpu();
        const child0 = childCpu();
        await runner.replay(entry);
        walls.push(performance.now() - t);
        agentCpu += ownCpu() - cpu0;
        children += childCpu() - child0;
      }
      walls.sort((a, b) => a - b);
      const r: ReplayCost = { argv: command.argv, wallMs: round(walls[Math.floor(times / 2)]!), agentCpuMs: round(agentCpu / times), childCpuMs: round(children / times) };
      process.stdout.write(JSON.stringify({ replay: r }) + "\n");
    }
  }
} finally {
  // (nothing to close yet)
}
