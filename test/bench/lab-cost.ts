/**
 * The agent's own cost in the lab: a no-op reconcile of an already-converged
 * backend and vmhost, and a vmhost's first apply. Builds its own lab
 * (prefix nfx) and tears it down.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { decodeAssignment, sealAssignment, type HostAssignment } from "@netfleet/shared";
import { labDown, labStatus, labUp, readPidfile, type LabHost, type LabOptions, type LabStatus } from "@netfleet/lab";
import type { CostRun, ReplayCost } from "./agent-cost.ts";

export interface NoopRow {
  role: "backend" | "vmhost";
  wallMs: number;
  commands: number;
  mutatingCommands: number;
  /** Each command of a no-op pass with its median time over the measured runs, costliest first (absent in results written before). */
  perCommand?: { command: string; ms: number; mutating: boolean }[];
  /** Median CPU ms of a pass: the agent's own process, and the commands it started (absent in results written before). */
  agentCpuMs?: number;
  childCpuMs?: number;
  /** Each read of a pass run alone, one after the other (agent-cost.ts --replay): what it costs without the others competing, costliest first. */
  alone?: { command: string; wallMs: number; agentCpuMs: number; childCpuMs: number }[];
  /** The machine's 1-minute load average when the row was measured (os.loadavg). */
  load1?: number;
}

export interface FirstApplyRow {
  wallMs: number;
  commandMs: number;
  overheadRatio: number;
  commands: number;
}

const AGENT_COST = join(import.meta.dirname, "agent-cost.ts");

function cost(host: LabHost, assignmentFile: string, runs: number, replay = 0): CostRun[] {
  return costAndReplay(host, assignmentFile, runs, replay).runs;
}

function costAndReplay(host: LabHost, assignmentFile: string, runs: number, replay: number): { runs: CostRun[]; alone: ReplayCost[] } {
  const argv = ["netns", "exec", host.namespace, process.execPath, AGENT_COST, "--assignment", assignmentFile, "--runs", String(runs), "--replay", String(replay)];
  argv.push("--ovs-db", host.ovsDb, "--ovs-rundir", host.ovsRundir, "--run-dir", host.agentDir);
  if (host.libvirtUri) argv.push("--libvirt-uri", host.libvirtUri);
  const out = execFileSync("ip", argv, { encoding: "utf8", timeout: 120_000 });
  const lines = out.trim().split("\n").map((l) => JSON.parse(l) as CostRun | { replay: ReplayCost });
  return {
    runs: lines.filter((l): l is CostRun => !("replay" in l)),
    alone: lines.flatMap((l) => ("replay" in l ? [l.replay] : [])).sort((a, b) => b.agentCpuMs + b.childCpuMs - (a.agentCpuMs + a.childCpuMs)),
  };
}

/** Each command's median time over runs (a command missing from a run counts as not run there), costliest first. */
function perCommand(runs: CostRun[]): NonNullable<NoopRow["perCommand"]> {
  const times = new Map<string, { ms: number[]; mutating: boolean }>();
  for (const r of runs)
    for (const c of r.perCommand ?? []) {
      const key = commandKey(c.argv);
      const t = times.get(key) ?? { ms: [], mutating: c.mutating };
      t.ms.push(c.ms);
      times.set(key, t);
    }
  return [...times.entries()].map(([command, t]) => ({ command, ms: median(t.ms), mutating: t.mutating })).sort((a, b) => b.ms - a.ms);
}

/** A command's argv as one line, virsh-batch's random mark replaced by MARK (the same command in every run). */
const commandKey = (argv: readonly string[]) => argv.join(" ").replace(/@@netfleet-[0-9a-f]+@@/g, "MARK");

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/**
 * What labCost may skip when run alone while working on the agent's cost:
 * `reuse` a lab that is already up (else it builds one), `keep` it up after,
 * measure the no-op passes only (`noopOnly`: no first apply, which wipes the vmhost).
 */
export interface LabCostOptions {
  reuse?: boolean;
  keep?: boolean;
  noopOnly?: boolean;
}

export async function labCost(repoRoot: string, log: (line: string) => void, opts: LabCostOptions = {}): Promise<{ noop: NoopRow[]; firstApply: FirstApplyRow | null; upMs: number }> {
  // File mode: the agents' own cost is what is measured here, not the control plane (the rollout part does that).
  const lab: LabOptions = { inventoryDir: join(repoRoot, "inventories", "lab"), prefix: "nfx", runDir: "/tmp/nfx-lab", repoRoot, control: "file" };
  let status: LabStatus | undefined = opts.reuse ? await labStatus(lab) : undefined;
  if (!status?.up) await labDown(lab);
  try {
    const t = performance.now();
    if (!status?.up) status = await labUp(lab);
    const upMs = performance.now() - t;
    if (!status.up) throw new Error(`bench lab not up: ${(status.problems ?? []).join("; ")}`);
    log(`bench lab up in ${Math.round(upMs)} ms`);
    const file = (h: LabHost) => join(lab.runDir, "assignments", `${h.name}.json`);
    const backend = status.hosts.find((h) => h.role === "backend")!;
    const vmhost = status.hosts.find((h) => h.role === "vmhost")!;

    // The agent daemons keep running: a no-op reconcile is what they do all day.
    const noop: NoopRow[] = [];
    for (const [role, h] of [["backend", backend], ["vmhost", vmhost]] as const) {
      const load1 = Math.round(loadavg()[0]! * 100) / 100;
      const measured = costAndReplay(h, file(h), 7, 5);
      const runs = measured.runs.slice(2); // the first two warm the page cache and JIT
      const row: NoopRow = {
        role,
        wallMs: median(runs.map((r) => r.wallMs)),
        commands: Math.max(...runs.map((r) => r.commands)),
        mutatingCommands: Math.max(...runs.map((r) => r.mutatingCommands)),
        perCommand: perCommand(runs),
        agentCpuMs: median(runs.map((r) => r.agentCpuMs ?? 0)),
        childCpuMs: median(runs.map((r) => r.childCpuMs ?? 0)),
        alone: measured.alone.map((a) => ({ command: commandKey(a.argv), wallMs: a.wallMs, agentCpuMs: a.agentCpuMs, childCpuMs: a.childCpuMs })),
        load1,
      };
      noop.push(row);
      log(`noop ${role}: ${row.wallMs} ms wall (median of ${runs.length}, passes ms: ${runs.map((r) => r.wallMs).join(" ")}), CPU ${row.agentCpuMs} ms agent + ${row.childCpuMs} ms commands, ${row.commands} commands, ${row.mutatingCommands} mutating; load ${load1}`);
      log(`  in the pass (wall ms, median; commands run side by side):`);
      for (const c of row.perCommand ?? []) log(`  ${c.ms.toFixed(1).padStart(7)} ms  ${c.mutating ? "MUTATES " : ""}${c.command}`);
      log(`  each alone (wall ms median of 5 | CPU ms agent + command):`);
      for (const a of row.alone ?? []) log(`  ${a.wallMs.toFixed(1).padStart(7)} ms | ${a.agentCpuMs.toFixed(1).padStart(5)} + ${a.childCpuMs.toFixed(1).padStart(5)}  ${a.command}`);
    }
    if (opts.noopOnly) return { noop, firstApply: null, upMs };

    // First apply: stop the vmhost's daemon, remove everything of ours (an assignment holding
    // only the prune), then apply the real assignment once.
    const pid = readPidfile(join(vmhost.agentDir, "agent.pid"));
    if (pid) process.kill(pid, "SIGTERM");
    const real: HostAssignment = decodeAssignment(file(vmhost), readFileSync(file(vmhost), "utf8"));
    const empty = sealAssignment({ ...real, resources: [{ kind: "prune", name: "host", keep: { links: [], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false } }] });
    const emptyFile = join(lab.runDir, "assignments", `${vmhost.name}.empty.json`);
    writeFileSync(emptyFile, JSON.stringify(empty));
    const wipe = cost(vmhost, emptyFile, 1)[0]!;
    if (wipe.failed > 0) throw new Error(`bench: wiping ${vmhost.name} failed`);
    const first = cost(vmhost, file(vmhost), 1)[0]!;
    if (first.failed > 0 || first.changed === 0) throw new Error(`bench: first apply on ${vmhost.name}: ${JSON.stringify(first)}`);
    const firstApply: FirstApplyRow = {
      wallMs: first.wallMs,
      commandMs: first.commandMs,
      overheadRatio: Math.round((first.wallMs / first.commandMs) * 100) / 100,
      commands: first.commands,
    };
    return { noop, firstApply, upMs };
  } finally {
    if (!opts.keep) await labDown(lab);
  }
}

// Run alone: `node test/bench/lab-cost.ts [--reuse] [--keep] [--noop-only]` measures the lab part only.
if (import.meta.main) {
  const repoRoot = join(import.meta.dirname, "..", "..");
  const { values } = parseArgs({ options: { reuse: { type: "boolean" }, keep: { type: "boolean" }, "noop-only": { type: "boolean" } } });
  const r = await labCost(repoRoot, (line) => process.stderr.write(line + "\n"), { reuse: values.reuse ?? false, keep: values.keep ?? false, noopOnly: values["noop-only"] ?? false });
  process.stdout.write(JSON.stringify(r, null, 2) + "\n");
}
