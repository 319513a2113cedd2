/**
 * npm run bench [-- --quick] [--out FILE] [--cpu-prof DIR] [--runs N] [--rollout-only] [--sizes LIST]
 *
 * Prints figures and writes them to bench-results.json; when that file
 * already holds an earlier run, the table shows both side by side. A
 * benchmark, not a test: nothing here passes or fails on a number. It exits
 * non-zero only when a part could not be measured (the figures it has are
 * still written, with the reason in `errors`). It starts by measuring the
 * machine's speed (calibrate.ts), printed above the table beside the earlier
 * run's, so that a slower machine is not taken for a slower netfleet.
 *
 * --quick: rollouts of 100 and 1,000 agents (full: 100, 1,000, 5,000 and
 * 10,000) plus the lab parts; inventory loads with mappings of 1,000 and
 * 5,000 keys (full: also 20,000); a server restart under 100 agents
 * (full: 1,000 and 5,000; restart.ts: each agent's return after the
 * restarted server answers, the target being every agent within 10 s). --cpu-prof DIR: the rollout's controller
 * process runs under node --cpu-prof and writes its profiles there.
 *
 * The full bench also runs the 10,000-agent rollout on a 3-node JetStream
 * cluster (KV replicas 3; issue 18 point 4), printed beside the 1-node rows,
 * and `netfleet status` and `netfleet hosts` as CLI processes over 10,000
 * hosts' stores, 5 runs (status.ts; --quick: 1,000 hosts, 1 run).
 *
 * --runs N: every rollout size is run N times, back to back. Default: the
 * 10,000-agent 1-node row 5 times (the targets' row: "in 5 of 5 runs"), every
 * other row once (--quick: once each). A size run more than once prints its
 * successes ("5/5") and min/median/max of each figure; its row in the JSON
 * (`rollout`) holds the median run's figures (by convergeMs) plus `spread`,
 * and every run is kept in `rolloutRuns`. Targets are judged on the worst run.
 * --rollout-only: only the rollout rows (no inventory, restart, status, lab or Ansible part).
 * --sizes LIST: only these rollout rows of the plan, e.g. `10000` or `1000,10000@3` (@3: on 3 nodes);
 * `--rollout-only --sizes 10000` is the 5 runs of the 10,000 row alone.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { inventoryParseBench, inventoryParseTable, type InventoryParseRow } from "./inventory-parse.ts";
import { ansiblePart } from "./ansible/bench.ts";
import { calibrate, calibrationLine, type Calibration } from "./calibrate.ts";
import { labCost, type FirstApplyRow, type NoopRow } from "./lab-cost.ts";
import { restartBench, type RestartRow } from "./restart.ts";
import { STATUS_TARGET_MS, statusBench, type Spread, type StatusRow } from "./status.ts";
import { benchProblems, rolloutBench, type CpuShares, type MemoryEvents, type MinMedMax, type RolloutRow, type RunSpread } from "./rollout.ts";

export interface BenchResults {
  version: 1;
  quick: boolean;
  at: string;
  /** calibration: the machine's speed at the start of the run (calibrate.ts; absent in results written before it was measured, or when it could not be). */
  machine: { cpus: number; memGb: number; node: string; calibration?: Calibration };
  /** Simulated agents' per-command latency, uniform in this range. */
  commandLatencyMs: [number, number];
  /** One row per rollout size (agents, nodes); a size run more than once (--runs): its median run, with `spread`. */
  rollout: RolloutRow[];
  /** Every run of every size, in run order, each with its `run` number (absent in results written before --runs). */
  rolloutRuns?: RolloutRow[];
  noop: NoopRow[];
  firstApply: FirstApplyRow | null;
  /** `netfleet status` and `netfleet hosts` over many hosts (status.ts; absent in results written before it was in the bench, or with --rollout-only). */
  status?: StatusRow;
  /** Inventory load time and peak RSS as one mapping grows (absent in results written before it was measured). */
  inventoryParse?: InventoryParseRow[];
  /** A server restart under N agents: each agent's return (absent in results written before it was measured). */
  restart?: RestartRow[];
  /** Parts that could not be measured, and why. */
  errors: string[];
}

const repoRoot = resolve(import.meta.dirname, "..", "..");

/** The simulated hosts' per-command latency, ms (uniform): roughly what sysctl, ip and ovs-vsctl take on a real host. */
const LATENCY: [number, number] = [5, 20];

const TARGETS = {
  convergeMs10k: 10_000,
  p99Ms10k: 3000,
  enrollMs10k: 30_000,
  controllerRssMb: 300,
  noopWallMs: 200,
  noopBackendWallMs: 100,
  overheadRatio: 1.3,
};

/** A run's conditions for its per-run line: " (load L, kernel K%, steal S%, faults Fk, 2 MB faults H, allocated A MB)"; parts not measured are left out. */
function runConditions(load1: number | undefined, cpu: CpuShares | undefined, memory: MemoryEvents | undefined): string {
  const parts = [
    ...(load1 !== undefined ? [`load ${load1}`] : []),
    ...(cpu ? [`kernel ${cpu.system}%`, `steal ${cpu.steal}%`] : []),
    ...(memory ? [`faults ${memory.faultsK}k`, `2 MB faults ${memory.hugePageFaults}`, `allocated ${memory.allocatedMb} MB`] : []),
  ];
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function fmt(n: number | null | undefined, digits = 0): string {
  return typeof n === "number" && Number.isFinite(n) ? n.toFixed(digits) : "-";
}

const met = (ok: boolean) => (ok ? "met" : "MISSED");

/** The status row's figures: each CLI command's min/median/max wall (ms), its CPU and peak RSS, and the same commands in process. */
function statusLines(s: StatusRow): string[] {
  const mm = (x: Spread) => x.join(" / ");
  return [
    `status and hosts over ${s.hosts} hosts (CLI processes, Node flags ${s.cliFlags.join(" ") || "none"}; min / median / max ms)`,
    `  --json  status ${mm(s.statusCliMs)} (CPU ${mm(s.statusCliCpuMs)}, peak RSS ${mm(s.statusCliRssMb)} MB)  hosts ${mm(s.hostsCliMs)} (CPU ${mm(s.hostsCliCpuMs)})`,
    `  text    status ${mm(s.statusTextCliMs)}  hosts ${mm(s.hostsTextCliMs)}`,
    `  in this process  status ${mm(s.statusMs)}  hosts ${mm(s.hostsMs)}; rows ${s.statusRows} and ${s.hostsRows}, status exit ${s.statusExit}`,
  ];
}

/**
 * The status target at 10,000 hosts, judged on the slowest run of the four
 * commands (status and hosts, --json and text), as status.ts judges it. A
 * listing short of its hosts misses it: the time of a command that read
 * less is no figure.
 */
function statusTargetLine(s: StatusRow): string {
  const worst = Math.max(s.statusCliMs[2], s.hostsCliMs[2], s.statusTextCliMs[2], s.hostsTextCliMs[2]);
  const whole = s.statusRows === s.hosts && s.hostsRows === s.hosts;
  return `  status and hosts over 10k ≤ ${STATUS_TARGET_MS} ms (every run): ${met(whole && worst <= STATUS_TARGET_MS)} (worst ${worst}${whole ? "" : `; listed ${s.statusRows} and ${s.hostsRows} of ${s.hosts}`})`;
}

function table(now: BenchResults, prev: BenchResults | undefined): string {
  const lines: string[] = [calibrationLine(now.machine.calibration, prev?.machine.calibration)];
  const side = (a: number | null | undefined, b: number | null | undefined, d = 0) => `${fmt(a, d).padStart(9)}${prev ? ` ${`(${fmt(b, d)})`.padStart(10)}` : ""}`;
  lines.push(`rollout (simulated agents, ${now.commandLatencyMs[0]}-${now.commandLatencyMs[1]} ms per command, real nats-server with stock max_payload; default plan: a canary, then waves of 25%, each wave all at once)${prev ? "   figures (previous run)" : ""}`);
  lines.push(`  cpuMs/host: the controller process's CPU per host; agentCpu, serverCpu: the agent processes' and nats-server's CPU (/proc) over the same window, ms per host`);
  lines.push(`  convergeMs: rollout start -> every host applied; p50Ms/p99Ms: per host, its revision published -> its applied report${prev && prev.rollout.some((r) => r.p99Ms === r.convergeMs) ? " (the previous run measured p50/p99 from the rollout start)" : ""}`);
  lines.push(`  ${"agents".padStart(10)} ${"convergeMs".padStart(prev ? 20 : 9)} ${"p50Ms".padStart(prev ? 20 : 9)} ${"p99Ms".padStart(prev ? 20 : 9)} ${"rssMb".padStart(prev ? 20 : 9)} ${"msgs/host".padStart(prev ? 20 : 9)} ${"bytes/host".padStart(prev ? 20 : 9)} ${"cpuMs/host".padStart(prev ? 20 : 9)} ${"agentCpu".padStart(prev ? 20 : 9)} ${"serverCpu".padStart(prev ? 20 : 9)}`);
  for (const r of now.rollout) {
    const p = prev?.rollout.find((x) => x.agents === r.agents && (x.nodes ?? 1) === (r.nodes ?? 1));
    lines.push(
      `  ${sizeLabel(r).padStart(10)} ${side(r.convergeMs, p?.convergeMs)} ${side(r.p50Ms, p?.p50Ms)} ${side(r.p99Ms, p?.p99Ms)} ${side(r.controllerRssMb, p?.controllerRssMb)} ${side(r.messagesPerHost, p?.messagesPerHost, 1)} ${side(r.bytesPerHost, p?.bytesPerHost)} ${side(r.controllerCpuMsPerHost, p?.controllerCpuMsPerHost, 2)} ${side(r.agentCpuMsPerHost, p?.agentCpuMsPerHost, 2)} ${side(r.serverCpuMsPerHost, p?.serverCpuMsPerHost, 2)}${r.spread ? `  (median of ${r.spread.runs} runs)` : r.load1 !== undefined ? `  (load ${r.load1})` : ""}${r.failed ? `  (${r.failed} hosts not converged)` : ""}${r.natsMaxPayloadMb ? `  (nats max_payload raised to ${r.natsMaxPayloadMb} MB: the rollout state outgrows 1 MB)` : ""}${r.error ? `  error: ${r.error}` : ""}`,
    );
  }
  if (now.rollout.some((r) => (r.nodes ?? 1) > 1)) lines.push(`  3n: on a 3-node JetStream cluster (KV replicas 3); msgs and bytes summed over the nodes (routes between them included)`);
  const spreads = now.rollout.filter((r) => r.spread);
  if (spreads.length) {
    lines.push("spread over runs (min / median / max of the measured runs; succeeded: result success, no failed or unconverged host)");
    for (const r of spreads) {
      const sp = r.spread!;
      const mm = (m: MinMedMax, d = 0) => `${fmt(m.min, d)} / ${fmt(m.median, d)} / ${fmt(m.max, d)}`;
      lines.push(`  ${sizeLabel(r).padStart(10)}  ${sp.succeeded}/${sp.runs} succeeded  convergeMs ${mm(sp.convergeMs)}  p99Ms ${mm(sp.p99Ms)}  rssMb ${mm(sp.controllerRssMb)}  enrollMs ${mm(sp.enrollMs)}`);
      lines.push(`  ${"".padStart(10)}  per run: ${sp.convergeMsByRun.map((c, i) => `${fmt(c)} ms ${sp.resultByRun[i]}${runConditions(sp.load1ByRun[i], sp.machineCpuByRun?.[i], sp.machineMemoryByRun?.[i])}`).join(", ")}`);
    }
  }
  lines.push("no-op reconcile in the lab");
  for (const r of now.noop) {
    const p = prev?.noop.find((x) => x.role === r.role);
    lines.push(`  ${r.role.padEnd(8)} wallMs ${side(r.wallMs, p?.wallMs, 1)}  commands ${side(r.commands, p?.commands)}  mutating ${side(r.mutatingCommands, p?.mutatingCommands)}`);
  }
  const f = now.firstApply;
  const pf = prev?.firstApply ?? undefined;
  lines.push(`first apply of a vmhost in the lab`);
  if (f) lines.push(`  wallMs ${side(f.wallMs, pf?.wallMs, 1)}  commandMs ${side(f.commandMs, pf?.commandMs, 1)}  overhead ${side(f.overheadRatio, pf?.overheadRatio, 2)}  commands ${side(f.commands, pf?.commands)}`);
  else lines.push("  not measured");
  if (now.inventoryParse?.length) lines.push(...inventoryParseTable(now.inventoryParse, prev ? (prev.inventoryParse ?? []) : undefined));
  if (now.status) lines.push(...statusLines(now.status));
  // Targets are judged on the worst run of the 1-node 10,000 row ("in 5 of 5 runs"): every run must succeed and meet them.
  const bigRuns = (now.rolloutRuns?.length ? now.rolloutRuns : now.rollout).filter((r) => r.agents === 10_000 && (r.nodes ?? 1) === 1);
  lines.push("targets (with several runs: the worst run)");
  if (bigRuns.some((r) => !r.error)) {
    const ok = bigRuns.filter((r) => benchProblems({ rollout: [r] }).length === 0).length;
    const worst = (k: "convergeMs" | "p99Ms" | "enrollMs") => Math.max(...bigRuns.map((r) => (r.error || !Number.isFinite(r[k]) ? Infinity : r[k])));
    lines.push(`  10k rollout succeeds in every run: ${met(ok === bigRuns.length)} (${ok}/${bigRuns.length})`);
    lines.push(`  10k converge ≤ ${TARGETS.convergeMs10k} ms: ${met(worst("convergeMs") <= TARGETS.convergeMs10k && ok === bigRuns.length)} (${bigRuns.length > 1 ? "worst " : ""}${fmt(worst("convergeMs"))})`);
    lines.push(`  10k p99 ≤ ${TARGETS.p99Ms10k} ms: ${met(worst("p99Ms") <= TARGETS.p99Ms10k)} (${bigRuns.length > 1 ? "worst " : ""}${fmt(worst("p99Ms"))})`);
    lines.push(`  10k enrollment ≤ ${TARGETS.enrollMs10k} ms: ${met(worst("enrollMs") <= TARGETS.enrollMs10k)} (${bigRuns.length > 1 ? "worst " : ""}${fmt(worst("enrollMs"))})`);
  } else if (!now.quick) {
    lines.push("  10k converge and p99: MISSED (not measured)");
  }
  const measured = (now.rolloutRuns?.length ? now.rolloutRuns : now.rollout).filter((r) => !r.error);
  if (measured.length) {
    const rss = Math.max(...measured.map((r) => r.controllerRssMb));
    lines.push(`  controller RSS ≤ ${TARGETS.controllerRssMb} MB: ${met(rss <= TARGETS.controllerRssMb)} (${rss}${now.quick ? ", up to 1,000 agents only" : ""})`);
  }
  for (const r of now.noop) {
    const limit = r.role === "backend" ? TARGETS.noopBackendWallMs : TARGETS.noopWallMs;
    lines.push(`  no-op ${r.role} ≤ ${limit} ms, 0 mutating: ${met(r.wallMs <= limit && r.mutatingCommands === 0)} (${r.wallMs} ms, ${r.mutatingCommands})`);
    // Which command costs what (lab-cost.ts perCommand: median ms per command, costliest first).
    for (const c of (r.perCommand ?? []).slice(0, 3)) lines.push(`    ${c.ms} ms  ${c.command.slice(0, 100)}`);
  }
  if (f) lines.push(`  first-apply overhead ≤ ${TARGETS.overheadRatio}: ${met(f.overheadRatio <= TARGETS.overheadRatio)} (${f.overheadRatio})`);
  if (now.status?.hosts === 10_000) lines.push(statusTargetLine(now.status));
  for (const e of now.errors) lines.push(`not measured: ${e}`);
  if (now.restart?.length) {
    lines.push("server restart (nats-server SIGKILLed, started again 1 s later; per agent: its return after the restarted server answered, ms; target: all within 10 s)");
    lines.push("   agents   min   p50   p99   max  not back  lost  rollbacks  intact");
    for (const r of now.restart) {
      lines.push(`  ${String(r.agents).padStart(7)} ${fmt(r.backMinMs).padStart(5)} ${fmt(r.backP50Ms).padStart(5)} ${fmt(r.backP99Ms).padStart(5)} ${fmt(r.backMaxMs).padStart(5)} ${String(r.notBack).padStart(9)} ${String(r.lostForGood).padStart(5)} ${String(r.rollbacks).padStart(10)}  ${r.sampleIntact}/${r.sample} ${met(r.notBack === 0 && r.backMaxMs < 10_000)}${r.rollout ? `  (killed in wave ${r.rollout.wave} of a rollout: ${r.rollout.result}, ${r.rollout.failed} failed, ${r.rollout.reverted} reverted)` : ""}`);
    }
  }
  return lines.join("\n");
}

/** "10000", or "10000 3n" for a row on a 3-node cluster. */
function sizeLabel(r: RolloutRow): string {
  return `${r.agents}${(r.nodes ?? 1) > 1 ? ` ${r.nodes}n` : ""}`;
}

/** min / median (the middle value; of two, their mean) / max of the finite values (NaN each when there are none). */
export function minMedMax(values: readonly number[]): MinMedMax {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { min: NaN, median: NaN, max: NaN };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { min: v[0]!, median: Math.round(median * 100) / 100, max: v.at(-1)! };
}

/**
 * One size's row from its runs (in run order, each with `run`): with one run, that run; with more,
 * the median run by convergeMs among the measured ones (the first run if none was measured), without
 * its `run` number, plus `spread` (RunSpread): successes judged by benchProblems, and min/median/max
 * of each figure over the measured runs.
 * @throws Error on an empty list.
 */
export function sizeRow(runs: readonly RolloutRow[]): RolloutRow {
  if (runs.length === 0) throw new Error("sizeRow: no runs");
  if (runs.length === 1) {
    const { run: _run, ...row } = runs[0]!;
    return row;
  }
  const measured = runs.filter((r) => !r.error && Number.isFinite(r.convergeMs));
  const byConverge = [...measured].sort((a, b) => a.convergeMs - b.convergeMs);
  const { run: _run, ...median } = byConverge.length ? byConverge[Math.floor((byConverge.length - 1) / 2)]! : runs[0]!;
  const of = (k: "convergeMs" | "p50Ms" | "p99Ms" | "controllerRssMb" | "enrollMs" | "messagesPerHost" | "bytesPerHost" | "controllerCpuMsPerHost") => minMedMax(measured.map((r) => r[k] ?? NaN));
  const spread: RunSpread = {
    runs: runs.length,
    succeeded: runs.filter((r) => benchProblems({ rollout: [r] }).length === 0).length,
    convergeMs: of("convergeMs"),
    p50Ms: of("p50Ms"),
    p99Ms: of("p99Ms"),
    controllerRssMb: of("controllerRssMb"),
    enrollMs: of("enrollMs"),
    messagesPerHost: of("messagesPerHost"),
    bytesPerHost: of("bytesPerHost"),
    controllerCpuMsPerHost: of("controllerCpuMsPerHost"),
    convergeMsByRun: runs.map((r) => (r.error ? NaN : r.convergeMs)),
    resultByRun: runs.map((r) => (r.error ? "error" : (r.result ?? "unknown"))),
    load1ByRun: runs.map((r) => r.load1),
    machineCpuByRun: runs.map((r) => r.machineCpu),
    machineMemoryByRun: runs.map((r) => r.machineMemory),
  };
  return { ...median, spread };
}

/** The rollout sizes of a bench run, in order: agents, nats-server nodes, runs (defaults: see this file's docstring; `runs` overrides every size's). */
export function rolloutPlan(quick: boolean, runs: number | undefined): { agents: number; nodes: 1 | 3; runs: number }[] {
  const sizes: { agents: number; nodes: 1 | 3; runs: number }[] = quick
    ? [
        { agents: 100, nodes: 1, runs: 1 },
        { agents: 1000, nodes: 1, runs: 1 },
      ]
    : [
        { agents: 100, nodes: 1, runs: 1 },
        { agents: 1000, nodes: 1, runs: 1 },
        { agents: 5000, nodes: 1, runs: 1 },
        { agents: 10_000, nodes: 1, runs: 5 },
        { agents: 10_000, nodes: 3, runs: 1 },
      ];
  return runs === undefined ? sizes : sizes.map((s) => ({ ...s, runs }));
}

async function main(): Promise<void> {
  let values: { quick?: boolean; out?: string; "cpu-prof"?: string; runs?: string; "rollout-only"?: boolean; sizes?: string };
  try {
    values = parseArgs({ options: { quick: { type: "boolean", default: false }, out: { type: "string" }, "cpu-prof": { type: "string" }, runs: { type: "string" }, "rollout-only": { type: "boolean", default: false }, sizes: { type: "string" } } }).values;
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const runs = values.runs === undefined ? undefined : Number(values.runs);
  if (runs !== undefined && !(Number.isInteger(runs) && runs >= 1 && runs <= 20)) {
    process.stderr.write(`bench: --runs ${values.runs}: a whole number of runs from 1 to 20\n`);
    process.exit(2);
  }
  const rolloutOnly = values["rollout-only"] ?? false;
  const out = resolve(values.out ?? join(repoRoot, "bench-results.json"));
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);
  let prev: BenchResults | undefined;
  if (existsSync(out)) {
    try {
      prev = JSON.parse(readFileSync(out, "utf8")) as BenchResults;
      if (prev.version !== 1 || !Array.isArray(prev.rollout) || !Array.isArray(prev.noop)) prev = undefined;
    } catch {
      prev = undefined;
    }
  }
  const t = performance.now();
  // First, on a machine nothing of ours loads yet: how fast it is, to read the figures beside another machine's.
  const calibration = await calibrate().catch((err: unknown) => {
    log(`machine speed not measured: ${(err as Error).message}`);
    return undefined;
  });
  if (calibration) log(calibrationLine(calibration, undefined));
  let sizes = rolloutPlan(values.quick ?? false, runs);
  if (values.sizes !== undefined) {
    const wanted = values.sizes.split(",").map((w) => w.trim());
    const label = (x: { agents: number; nodes: number }) => `${x.agents}${x.nodes > 1 ? `@${x.nodes}` : ""}`;
    const unknown = wanted.filter((w) => !sizes.some((x) => label(x) === w));
    if (unknown.length) {
      process.stderr.write(`bench: --sizes ${unknown.join(",")}: not a rollout row of this plan (rows: ${sizes.map(label).join(", ")})\n`);
      process.exit(2);
    }
    sizes = sizes.filter((x) => wanted.includes(label(x)));
  }
  const rollout: RolloutRow[] = [];
  const rolloutRuns: RolloutRow[] = [];
  const errors: string[] = [];
  const inventoryParse = rolloutOnly ? [] : inventoryParseBench({ quick: values.quick ?? false, log });
  for (const r of inventoryParse) if (r.error) errors.push(`inventory load (${r.form}, ${r.keys} keys): ${r.error}`);
  const cpuProf = values["cpu-prof"] ? resolve(values["cpu-prof"]) : undefined;
  for (const { agents: n, nodes, runs: times } of sizes) {
    const mine: RolloutRow[] = [];
    const label = `${n}${nodes > 1 ? ` on ${nodes} nodes` : ""}`;
    for (let run = 1; run <= times; run++) {
      try {
        const row = await rolloutBench(n, log, {
          minDelayMs: LATENCY[0],
          maxDelayMs: LATENCY[1],
          nodes,
          ...(cpuProf ? { cpuProfDir: cpuProf } : {}),
        });
        log(`rollout ${label}${times > 1 ? ` run ${run}/${times}` : ""}: ${JSON.stringify(row)}`);
        mine.push({ ...row, run });
      } catch (err) {
        const error = (err as Error).message.split("\n")[0]!;
        log(`rollout ${label} failed: ${(err as Error).stack ?? error}`);
        errors.push(`rollout of ${label} agents${times > 1 ? ` (run ${run})` : ""}: ${error}`);
        mine.push({ agents: n, ...(nodes > 1 ? { nodes } : {}), run, convergeMs: NaN, p50Ms: NaN, p99Ms: NaN, controllerRssMb: NaN, messagesPerHost: NaN, runMs: NaN, enrollMs: NaN, waves: 0, failed: n, error });
      }
    }
    rolloutRuns.push(...mine);
    rollout.push(sizeRow(mine));
  }
  const restart: RestartRow[] = [];
  // [agents, wave]: wave 0 kills the server idle; wave W kills it 500 ms into wave W of a rollout (restart.ts duringWave, issue 18 point 6).
  for (const [n, wave] of (rolloutOnly ? [] : values.quick ? [[100, 0]] : [[1000, 0], [5000, 0], [5000, 2]]) as [number, number][]) {
    try {
      const row = await restartBench(n, log, { downMs: 1000, sample: values.quick ? 3 : 10, ...(wave ? { duringWave: { wave }, sample: 0 } : {}) });
      log(`restart ${n}: ${JSON.stringify(row)}`);
      restart.push(row);
    } catch (err) {
      const error = (err as Error).message.split("\n")[0]!;
      log(`restart ${n} failed: ${(err as Error).stack ?? error}`);
      errors.push(`restart under ${n} agents: ${error}`);
    }
  }
  // status and hosts over the stores of many hosts (issue 18 point 2): the CLI as an operator runs it.
  let status: StatusRow | undefined;
  if (!rolloutOnly) {
    const [hosts, times] = values.quick ? [1000, 1] : [10_000, 5];
    try {
      status = await statusBench(hosts, log, times);
    } catch (err) {
      log(`status ${hosts} failed: ${(err as Error).stack ?? String(err)}`);
      errors.push(`status over ${hosts} hosts: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  let lab: Awaited<ReturnType<typeof labCost>> | undefined;
  try {
    if (!rolloutOnly) lab = await labCost(repoRoot, log);
  } catch (err) {
    log(`lab parts failed: ${(err as Error).stack ?? String(err)}`);
    errors.push(`lab (noop, firstApply): ${(err as Error).message.split("\n")[0]}`);
  }
  const results: BenchResults = {
    version: 1,
    quick: values.quick ?? false,
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, memGb: Math.round(totalmem() / 2 ** 30), node: process.version, ...(calibration ? { calibration } : {}) },
    commandLatencyMs: LATENCY,
    rollout,
    rolloutRuns,
    noop: lab?.noop ?? [],
    firstApply: lab?.firstApply ?? null,
    ...(status ? { status } : {}),
    inventoryParse,
    restart,
    errors,
  };
  writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
  process.stdout.write(table(results, prev) + "\n");
  // netfleet vs Ansible on the lab's VM hosts (issue 18 point 5): minutes of Ansible, so not in --quick (the smoke test).
  if (!values.quick && !rolloutOnly) await ansiblePart(repoRoot, log, errors, rollout);
  log(`done in ${Math.round(performance.now() - t)} ms; wrote ${out}`);
  if (errors.length) process.exitCode = 1;
}

if (import.meta.main) await main();
