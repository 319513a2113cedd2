/**
 * npm run bench [-- --quick] [--out FILE] [--cpu-prof DIR]
 *
 * Prints figures and writes them to bench-results.json; when that file
 * already holds an earlier run, the table shows both side by side. A
 * benchmark, not a test: nothing here passes or fails on a number. It exits
 * non-zero only when a part could not be measured (the figures it has are
 * still written, with the reason in `errors`).
 *
 * --quick: rollouts of 100 and 1,000 agents (full: 100, 1,000, 5,000 and
 * 10,000) plus the lab parts; inventory loads with mappings of 1,000 and
 * 5,000 keys (full: also 20,000); a server restart under 100 agents
 * (full: 1,000 and 5,000; restart.ts: each agent's return after the
 * restarted server answers, the target being every agent within 10 s). --cpu-prof DIR: the rollout's controller
 * process runs under node --cpu-prof and writes its profiles there.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { inventoryParseBench, inventoryParseTable, type InventoryParseRow } from "./inventory-parse.ts";
import { ansiblePart } from "./ansible/bench.ts";
import { labCost, type FirstApplyRow, type NoopRow } from "./lab-cost.ts";
import { restartBench, type RestartRow } from "./restart.ts";
import { rolloutBench, type RolloutRow } from "./rollout.ts";

export interface BenchResults {
  version: 1;
  quick: boolean;
  at: string;
  machine: { cpus: number; memGb: number; node: string };
  /** Simulated agents' per-command latency, uniform in this range. */
  commandLatencyMs: [number, number];
  rollout: RolloutRow[];
  noop: NoopRow[];
  firstApply: FirstApplyRow | null;
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
  controllerRssMb: 300,
  noopWallMs: 200,
  noopBackendWallMs: 100,
  overheadRatio: 1.3,
};

function fmt(n: number | null | undefined, digits = 0): string {
  return typeof n === "number" && Number.isFinite(n) ? n.toFixed(digits) : "-";
}

const met = (ok: boolean) => (ok ? "met" : "MISSED");

function table(now: BenchResults, prev: BenchResults | undefined): string {
  const lines: string[] = [];
  const side = (a: number | null | undefined, b: number | null | undefined, d = 0) => `${fmt(a, d).padStart(9)}${prev ? ` ${`(${fmt(b, d)})`.padStart(10)}` : ""}`;
  lines.push(`rollout (simulated agents, ${now.commandLatencyMs[0]}-${now.commandLatencyMs[1]} ms per command, real nats-server with stock max_payload; default plan: a canary, then waves of 25%, each wave all at once)${prev ? "   figures (previous run)" : ""}`);
  lines.push(`  convergeMs: rollout start -> every host applied; p50Ms/p99Ms: per host, its revision published -> its applied report${prev && prev.rollout.some((r) => r.p99Ms === r.convergeMs) ? " (the previous run measured p50/p99 from the rollout start)" : ""}`);
  lines.push(`  ${"agents".padStart(7)} ${"convergeMs".padStart(prev ? 20 : 9)} ${"p50Ms".padStart(prev ? 20 : 9)} ${"p99Ms".padStart(prev ? 20 : 9)} ${"rssMb".padStart(prev ? 20 : 9)} ${"msgs/host".padStart(prev ? 20 : 9)} ${"bytes/host".padStart(prev ? 20 : 9)} ${"cpuMs/host".padStart(prev ? 20 : 9)}`);
  for (const r of now.rollout) {
    const p = prev?.rollout.find((x) => x.agents === r.agents);
    lines.push(
      `  ${String(r.agents).padStart(7)} ${side(r.convergeMs, p?.convergeMs)} ${side(r.p50Ms, p?.p50Ms)} ${side(r.p99Ms, p?.p99Ms)} ${side(r.controllerRssMb, p?.controllerRssMb)} ${side(r.messagesPerHost, p?.messagesPerHost, 1)} ${side(r.bytesPerHost, p?.bytesPerHost)} ${side(r.controllerCpuMsPerHost, p?.controllerCpuMsPerHost, 2)}${r.failed ? `  (${r.failed} hosts not converged)` : ""}${r.natsMaxPayloadMb ? `  (nats max_payload raised to ${r.natsMaxPayloadMb} MB: the rollout state outgrows 1 MB)` : ""}${r.error ? `  error: ${r.error}` : ""}`,
    );
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
  const big = now.rollout.find((r) => r.agents === 10_000 && !r.error);
  lines.push("targets");
  if (big) {
    lines.push(`  10k converge ≤ ${TARGETS.convergeMs10k} ms: ${met(big.convergeMs <= TARGETS.convergeMs10k && big.failed === 0)} (${big.convergeMs})`);
    lines.push(`  10k p99 ≤ ${TARGETS.p99Ms10k} ms: ${met(big.p99Ms <= TARGETS.p99Ms10k)} (${big.p99Ms})`);
  } else if (!now.quick) {
    lines.push("  10k converge and p99: MISSED (not measured)");
  }
  const measured = now.rollout.filter((r) => !r.error);
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

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: "boolean", default: false }, out: { type: "string" }, "cpu-prof": { type: "string" } } });
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
  const sizes = values.quick ? [100, 1000] : [100, 1000, 5000, 10_000];
  const rollout: RolloutRow[] = [];
  const errors: string[] = [];
  const inventoryParse = inventoryParseBench({ quick: values.quick ?? false, log });
  for (const r of inventoryParse) if (r.error) errors.push(`inventory load (${r.form}, ${r.keys} keys): ${r.error}`);
  const cpuProf = values["cpu-prof"] ? resolve(values["cpu-prof"]) : undefined;
  for (const n of sizes) {
    try {
      const row = await rolloutBench(n, log, {
        minDelayMs: LATENCY[0],
        maxDelayMs: LATENCY[1],
        ...(cpuProf ? { cpuProfDir: cpuProf } : {}),
      });
      log(`rollout ${n}: ${JSON.stringify(row)}`);
      rollout.push(row);
    } catch (err) {
      const error = (err as Error).message.split("\n")[0]!;
      log(`rollout ${n} failed: ${(err as Error).stack ?? error}`);
      errors.push(`rollout of ${n} agents: ${error}`);
      rollout.push({ agents: n, convergeMs: NaN, p50Ms: NaN, p99Ms: NaN, controllerRssMb: NaN, messagesPerHost: NaN, runMs: NaN, enrollMs: NaN, waves: 0, failed: n, error });
    }
  }
  const restart: RestartRow[] = [];
  // [agents, wave]: wave 0 kills the server idle; wave W kills it 500 ms into wave W of a rollout (restart.ts duringWave, issue 18 point 6).
  for (const [n, wave] of (values.quick ? [[100, 0]] : [[1000, 0], [5000, 0], [5000, 2]]) as [number, number][]) {
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
  let lab: Awaited<ReturnType<typeof labCost>> | undefined;
  try {
    lab = await labCost(repoRoot, log);
  } catch (err) {
    log(`lab parts failed: ${(err as Error).stack ?? String(err)}`);
    errors.push(`lab (noop, firstApply): ${(err as Error).message.split("\n")[0]}`);
  }
  const results: BenchResults = {
    version: 1,
    quick: values.quick ?? false,
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, memGb: Math.round(totalmem() / 2 ** 30), node: process.version },
    commandLatencyMs: LATENCY,
    rollout,
    noop: lab?.noop ?? [],
    firstApply: lab?.firstApply ?? null,
    inventoryParse,
    restart,
    errors,
  };
  writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
  process.stdout.write(table(results, prev) + "\n");
  // netfleet vs Ansible on the lab's VM hosts (issue 18 point 5): minutes of Ansible, so not in --quick (the smoke test).
  if (!values.quick) await ansiblePart(repoRoot, log, errors, rollout);
  log(`done in ${Math.round(performance.now() - t)} ms; wrote ${out}`);
  if (errors.length) process.exitCode = 1;
}

await main();
