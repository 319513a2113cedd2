/**
 * Fleet-scale rollout benchmark: N simulated agents against a real
 * nats-server on loopback.
 *
 * Three kinds of processes, so that the controller's memory is its own:
 * - this one: nats-server (monitoring on 127.0.0.1) and the controller
 *   service (`netfleet serve`'s ControlPlane.serve: enrollment, reports,
 *   heartbeats), which stays up through the rollout as it would on site;
 * - one or two agent processes (rollout-agents.ts): real NatsAgents on a
 *   simulated host whose every command sleeps 5-20 ms, enrolled with the
 *   join token before the clock starts;
 * - the controller (rollout-controller.ts): `netfleet rollout` — ControlPlane
 *   + Rollout with its defaults (canary, then 25 % waves, each wave's hosts
 *   all at once) — timed from run() to the last host's report of the new
 *   revision (convergeMs); per host from its revision's publication to its
 *   report (p50/p99); its peak RSS and CPU;
 * - the probe (rollout-probe.ts), which hears those publications and
 *   reports, so that measuring costs the controller nothing; its messages
 *   and bytes are taken off nats-server's counters. The agent processes'
 *   and nats-server's CPU over the same window come from /proc.
 *
 * Everything it starts it stops; every wait is bounded.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey } from "@netfleet/controller";
import { generateSigningKeys, type Host } from "@netfleet/shared";
import { CONTROLLER_NODE_FLAGS } from "@netfleet/shared/cli/launch";
import { inventoryHost } from "../nats/harness.ts";
import type { AgentsArgs } from "./rollout-agents.ts";
import type { ControllerArgs } from "./rollout-controller.ts";
import { varzCounters, type Counters, type ProbeArgs, type ProbeResult } from "./rollout-probe.ts";

export interface RolloutRow {
  agents: number;
  /** nats-server nodes: 1 (a single server; also when absent, in results written before the cluster row) or 3 (a JetStream cluster, KV replicas 3). */
  nodes?: number;
  /** Rollout start to the last host's report of the new revision applied. */
  convergeMs: number;
  /** Per host: its new revision published (stored in the desired bucket) to its applied report heard. */
  p50Ms: number;
  p99Ms: number;
  /** Informational: the slowest host's publish-to-report time. */
  maxMs?: number;
  /** Peak RSS of the controller process running the rollout. */
  controllerRssMb: number;
  /** nats-server in_msgs + out_msgs over the rollout, per host (3 nodes: summed over every node's /varz, so route traffic between the nodes counts too). */
  messagesPerHost: number;
  /** nats-server in_bytes + out_bytes over the rollout (/varz; 3 nodes: summed over the nodes), per host: the bytes on the wire a host costs. */
  bytesPerHost?: number;
  /** The controller process's CPU (user + system) over Rollout.run(), ms per host. */
  controllerCpuMsPerHost?: number;
  /** The agent processes' CPU (user + system, /proc/PID/stat) from run() to its result, ms per host: what each simulated host's agent costs. */
  agentCpuMsPerHost?: number;
  /** nats-server's CPU (every node's, /proc/PID/stat) over the same window, ms per host. */
  serverCpuMsPerHost?: number;
  /** Informational: until Rollout.run() returned (its final state write and lock release included). */
  runMs: number;
  /** Informational, before the clock: every agent enrolled and connected. */
  enrollMs: number;
  /**
   * Informational: CPU over enrollment (agent processes started to every agent connected), ms per host, by process:
   * the agent processes (module load included), nats-server (every node) and this process (the controller service,
   * `netfleet serve`: enrollment). Enrollment is CPU-bound on 2 cores: their sum over the cores is most of enrollMs.
   */
  enrollCpuMsPerHost?: { agents: number; server: number; service: number };
  waves: number;
  /** Hosts that did not report the new revision applied without failures, plus the hosts the rollout counted failed. */
  failed: number;
  /** Rollout.run()'s result: "success", "partial" or "failed" (stopped and reverted). */
  result?: string;
  /** Hosts whose report of the new revision carried failed resources (never counted as converged). */
  failedReports?: number;
  /** Hosts whose agent undid the new revision (lockout protection): their report says rolledBack. */
  rolledBackReports?: number;
  /** The rollout's failed hosts grouped by reason (host names and numbers taken out). */
  failures?: FailureGroup[];
  /** What the simulated agents logged, counted by event (lockout-rollback, confirm-retry, connection-lost, ...). */
  agentEvents?: Record<string, number>;
  /** How late timers ran (ms, p99 and max) in the controller process over the rollout and in each agent process after enrollment. */
  eventLoopDelayMs?: { controller: { p99: number; max: number }; agents: { p99: number; max: number }[] };
  /** nats-server's max_payload when the bench raised it (see RolloutBenchOptions.maxPayloadMb). */
  natsMaxPayloadMb?: number;
  /** The machine's 1-minute load average when the controller process started (os.loadavg; 2 cores: above 2, figures include waiting for a core). */
  load1?: number;
  /** The machine's CPU over the rollout (controller running -> result), percent of both cores' time by state (cpuShares). */
  machineCpu?: CpuShares;
  /** The machine's memory events over the same window (memoryEvents: page faults, huge-page faults, pages allocated). */
  machineMemory?: MemoryEvents;
  /** 3 nodes: the agents' connections per node when the rollout started (nats.js picks one of the URLs at random). */
  connectionsPerNode?: number[];
  /** Set by run.ts when this size could not be measured (the figures are then NaN, null in JSON). */
  error?: string;
  /** run.ts: which run of its size this was (1-based; in BenchResults.rolloutRuns). */
  run?: number;
  /** run.ts --runs: this row stands for several runs of the size; figures above are the median run's, the spread is here (RunSpread). */
  spread?: RunSpread;
}

/** min, median and max of one figure over the measured runs of a size (NaN when none was measured). */
export interface MinMedMax {
  min: number;
  median: number;
  max: number;
}

/**
 * The spread of one rollout size over its runs (run.ts --runs): how many ran, how many succeeded
 * (measured, result success, no failed or unconverged host: benchProblems finds nothing), and
 * min/median/max of each figure over the measured runs. Targets are judged on the worst run.
 */
export interface RunSpread {
  runs: number;
  succeeded: number;
  convergeMs: MinMedMax;
  p50Ms: MinMedMax;
  p99Ms: MinMedMax;
  controllerRssMb: MinMedMax;
  enrollMs: MinMedMax;
  messagesPerHost: MinMedMax;
  bytesPerHost: MinMedMax;
  controllerCpuMsPerHost: MinMedMax;
  /** Each run's convergeMs in run order (NaN: not measured), and each run's result ("error" when not measured). */
  convergeMsByRun: number[];
  resultByRun: string[];
  /** Each run's RolloutRow.load1 (the 1-minute load average at its start). */
  load1ByRun: (number | undefined)[];
  /** Each run's RolloutRow.machineCpu (the machine's CPU over its rollout, percent by state). */
  machineCpuByRun?: (CpuShares | undefined)[];
  /** Each run's RolloutRow.machineMemory. */
  machineMemoryByRun?: (MemoryEvents | undefined)[];
}

/** Failed hosts of one reason: the reason with host names and numbers taken out, how many, the first few, when judged (ms from the rollout start). */
export interface FailureGroup {
  reason: string;
  hosts: number;
  sample: string[];
  firstAtMs: number;
  lastAtMs: number;
}

export interface RolloutBenchOptions {
  /** Per-command latency of the simulated hosts, uniform in [min, max] ms. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Run the controller process and the agent processes under `node --cpu-prof`, writing into this directory (controller-N, agentsP-N). */
  cpuProfDir?: string;
  /**
   * Profile nats-server (node 1) over the rollout: its Go profiler is turned on (NatsServerOptions.profBasePort, on
   * ports freeBasePort checked free with the nodes' others) and a CPU profile of `natsProfSeconds` (default 15) taken from the controller's start is
   * written to this directory as `nats-N.pprof` (read it with test/bench/pprof.ts).
   */
  natsProfDir?: string;
  natsProfSeconds?: number;
  /**
   * Raise nats-server's max_payload (default 1 MB) to this many MB. Not
   * needed any more (the rollout state is sharded: no value near 1 MB at
   * 10,000 hosts); kept for experiments.
   */
  maxPayloadMb?: number;
  /** Hosts whose `sysctl -w` fails (AgentsArgs.failHosts): a fault the smoke test injects to see the bench report it. */
  failHosts?: string[];
  /** Pick nats-server's client port (and port+200 for monitoring) in [from, to) instead of 24000-24550 (tests: their own range). */
  ports?: [number, number];
  /** How long a host has to report (Rollout applyTimeoutMs; default 60 s). */
  applyTimeoutMs?: number;
  /** Experiments: agent processes (default 1, 2 above 1,000 agents): fewer processes put more applying agents on one event loop. */
  processes?: number;
  /** Experiments: hosts per wave after the canary (Rollout batch, default 25 %). */
  batchPercent?: number;
  /** Experiments: how long enrollment may take (default 60 s + 20 ms per agent). */
  enrollTimeoutMs?: number;
  /**
   * nats-server nodes: 1 (default) or 3, a JetStream cluster on loopback (NatsServer.start nodes 3;
   * the site's KV buckets and audit stream made with 3 replicas, as `netfleet serve --nodes 3` does).
   * Every process is given every node's URL; each agent's connection picks one at random (nats.js),
   * which spreads the agents over the nodes.
   */
  nodes?: 1 | 3;
  /**
   * Node flags of the controller process (default CONTROLLER_NODE_FLAGS, as the packaged `netfleet` wrapper starts the CLI,
   * and LONG_RUNNING_V8_FLAGS set at its start, as `netfleet rollout` sets them; given: these flags only, [] for none).
   */
  controllerFlags?: string[];
  /** Node flags of the agent processes (default simulatorNodeFlags of the agents per process; [] for none). */
  agentFlags?: string[];
}

/**
 * Node flags of every process of simulated agents (rollout-agents.ts): a young generation (V8's
 * semi-space, MB) sized for the thousands of agents that share the process's one heap. A real agent is
 * a process of its own, whose young generation (16 MB or more) holds one apply's garbage, which dies
 * there; packed 5,000 to a heap at V8's default, every agent's apply in flight outlives several
 * scavenges and is copied, then promoted, and each scavenge also walks the old generation's pointers
 * into the new one, 5,000 agents' worth: GC the agents never pay on their hosts. Even at 128 MB the
 * simulator's young generation is some 26 KB per agent. Measured (--trace-gc, 10,000 agents, two
 * processes, GC pauses per process over the rollout): 1,417 and 1,489 ms by default, 1,083 and 818 ms
 * with it; the agent processes grew from 500 to 600-640 MB.
 */
export const SIMULATOR_NODE_FLAGS: readonly string[] = Object.freeze(["--max-semi-space-size=128"]);

/**
 * Agents in one simulator process from which its young generation starts at its full size
 * (simulatorNodeFlags).
 */
const FULL_YOUNG_GENERATION_FROM = 1000;

/**
 * Node flags of a process of `agents` simulated agents: SIMULATOR_NODE_FLAGS, plus, from
 * FULL_YOUNG_GENERATION_FROM agents, `--min-semi-space-size` at the same 128 MB. The
 * young generation then never shrinks, and so is not grown again. V8 sizes the semi-space
 * to the survival rate it sees. After enrollment, with the fleet idle, the semi-space shrinks
 * and its pages go back to the kernel. The rollout then grew each process from 610-617 to
 * 766-782 MB again, in 40-42k minor faults per process.
 *
 * Each of those faults is a page the kernel zeroes (clear_page_erms). On a guest whose
 * memory the host backs lazily, that cost 12.5 % of the machine over a 10,000-host
 * rollout (`perf record -a`, issue 18).
 *
 * Measured (10,000 hosts, 3 runs each, alternating, and 2 more runs with it), over the rollout:
 * - minor faults: 133-220k on the machine before, 82-137k with it;
 * - the agent processes: 3.8-7.9k faults each, against 40-42k;
 * - machine kernel share: 17.0-22.2 % before, 15.8-16.8 % with it.
 * Processes of fewer agents (the smoke test's) keep V8's sizing: 256 MB touched for a
 * few agents would be waste.
 */
export function simulatorNodeFlags(agents: number): string[] {
  return [...SIMULATOR_NODE_FLAGS, ...(agents >= FULL_YOUNG_GENERATION_FROM ? ["--min-semi-space-size=128"] : [])];
}

/** The benches' site name and enrollment token (rollout, enroll). */
export const SITE = "bench";
export const TOKEN = "bench-enrollment-token-0123456789";
const HERE = import.meta.dirname;

/** Agents per agent process: above this, two processes (two cores). */
const PER_PROCESS = 1000;

/** A bench child process speaking JSON lines on stdout (rollout-agents.ts, rollout-controller.ts). */
export interface Child {
  name: string;
  child: ChildProcess;
  /** Every JSON line it printed so far. */
  lines: Record<string, unknown>[];
  /** Resolves with the first stdout JSON line with this event; rejects on exit or timeout. */
  waitFor(event: string, timeoutMs: number): Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

/** clock ticks per second of /proc/PID/stat's utime and stime (sysconf(_SC_CLK_TCK), proc(5)); 100 on Linux. */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * A process's CPU so far (user + system, ms) from /proc/PID/stat fields 14 and 15 (proc(5)); NaN when
 * `pid` is undefined or gone. The fields are counted after the ")" that ends the command name.
 */
export function procCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/** The machine's CPU time so far, ms summed over every core, by state (the first line of /proc/stat, proc(5)); undefined off Linux. */
export function machineCpuMs(): { user: number; system: number; idle: number; steal: number; total: number } | undefined {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest and guest_nice are already counted in user and nice).
    const ms = (ticks: number) => (ticks * 1000) / CLK_TCK;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
    return { user: ms(user + nice), system: ms(system + irq + softirq), idle: ms(idle + iowait), steal: ms(steal), total: ms(user + nice + system + idle + iowait + irq + softirq + steal) };
  } catch {
    return undefined;
  }
}

/**
 * Shares of the machine's CPU time between two machineCpuMs readings, percent: user, system (kernel, irq
 * and softirq included), idle and steal (time the hypervisor gave another guest while this one was
 * ready to run: a run whose every process costs more CPU per host with steal high was slowed from
 * outside). Undefined when either reading is.
 */
export function cpuShares(a: ReturnType<typeof machineCpuMs>, b: ReturnType<typeof machineCpuMs>): CpuShares | undefined {
  if (!a || !b || b.total <= a.total) return undefined;
  const pct = (k: keyof CpuShares) => Math.round((1000 * (b[k] - a[k])) / (b.total - a.total)) / 10;
  return { user: pct("user"), system: pct("system"), idle: pct("idle"), steal: pct("steal") };
}

/** Counters of /proc/vmstat (proc(5)) that say what the kernel spent its time on: pages faulted in, 2 MB pages faulted in, pages allocated. */
const VMSTAT_KEYS = ["pgfault", "thp_fault_alloc", "pgalloc_normal", "pgalloc_dma32"] as const;

/** The VMSTAT_KEYS counters now; undefined off Linux. */
export function vmstatNow(): Partial<Record<(typeof VMSTAT_KEYS)[number], number>> | undefined {
  try {
    const all = new Map(readFileSync("/proc/vmstat", "utf8").trim().split("\n").map((l) => l.split(" ") as [string, string]));
    return Object.fromEntries(VMSTAT_KEYS.flatMap((k) => (all.has(k) ? [[k, Number(all.get(k))]] : [])));
  } catch {
    return undefined;
  }
}

/**
 * The machine's memory events between two vmstatNow readings: page faults (thousands), 2 MB
 * transparent huge pages faulted in (each one zeroed whole by the kernel), and pages allocated (MB
 * of 4 KiB pages). Undefined when either reading is.
 */
export function memoryEvents(a: ReturnType<typeof vmstatNow>, b: ReturnType<typeof vmstatNow>): MemoryEvents | undefined {
  if (!a || !b) return undefined;
  const d = (k: (typeof VMSTAT_KEYS)[number]) => (b[k] ?? 0) - (a[k] ?? 0);
  return { faultsK: Math.round(d("pgfault") / 1000), hugePageFaults: d("thp_fault_alloc"), allocatedMb: Math.round(((d("pgalloc_normal") + d("pgalloc_dma32")) * 4) / 1024) };
}

/** The machine's memory events over a window (memoryEvents). */
export interface MemoryEvents {
  faultsK: number;
  hugePageFaults: number;
  allocatedMb: number;
}

/** The machine's CPU over a window, percent of all cores' time (cpuShares). */
export interface CpuShares {
  user: number;
  system: number;
  idle: number;
  steal: number;
}

/** Starts `file` (one JSON argument) under this Node; its stdout JSON lines are kept, its other output goes to `log`. */
export function spawnChild(name: string, file: string, arg: string, log: (l: string) => void, execArgv: string[] = []): Child {
  const child = spawn(process.execPath, [...execArgv, file, arg], { stdio: ["pipe", "pipe", "pipe"] });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      log(`${name}: ${line}`);
    }
    for (const w of waiters) w();
  });
  createInterface({ input: child.stderr! }).on("line", (line) => log(`${name}: ${line}`));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      for (const w of waiters) w();
      resolve();
    }),
  );
  return {
    name,
    child,
    lines,
    exited,
    waitFor(event, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find((l) => l.event === event);
          if (hit) return done(() => resolve(hit));
          if (exitCode !== undefined) return done(() => reject(new Error(`${name} exited (${exitCode}) before "${event}"`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${name}: no "${event}" within ${timeoutMs} ms`))), timeoutMs);
        const done = (f: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/** Writes the host tokens of `names` to `file` (0600, JSON { name: token }) for an agents process (AgentsArgs.tokensFile); returns the file. */
export async function writeTokens(file: string, names: string[], tokens: Record<string, string>): Promise<string> {
  await writeFile(file, JSON.stringify(Object.fromEntries(names.map((n) => [n, tokens[n]!]))), { mode: 0o600 });
  return file;
}

/** Asks a child to stop (a line on stdin, then SIGTERM), SIGKILL after the grace time; always reaped. */
export async function stopChild(c: Child, graceMs: number): Promise<void> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.stdin?.end("stop\n");
  const term = setTimeout(() => c.child.kill("SIGTERM"), graceMs / 2);
  const kill = setTimeout(() => c.child.kill("SIGKILL"), graceMs);
  await c.exited;
  clearTimeout(term);
  clearTimeout(kill);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * A client port P for NatsServer.start with every port of `nodes` nodes free on loopback: clients
 * P..P+nodes-1, monitoring P+200.., with 3 nodes the cluster routes P+100.., and with `profiler` the Go
 * profiler's P+300.. (PROFILER_OFFSET); P in [from, to - 200 - 50) (default 24000-24550, below the ephemeral
 * range at 32768).
 * @throws Error when none is found in 50 tries.
 */
export async function freeBasePort(range: [number, number] = [24000, 24550], nodes = 1, profiler = false): Promise<number> {
  const [from, to] = range;
  const span = Math.max(1, to - 200 - from - 50);
  const bases = [0, ...(nodes > 1 ? [100] : []), 200, ...(profiler ? [PROFILER_OFFSET] : [])];
  const offsets = bases.flatMap((off) => Array.from({ length: nodes }, (_, n) => off + n));
  for (let i = 0; i < 50; i++) {
    const p = from + Math.floor(Math.random() * span) + i;
    let free = true;
    for (const off of offsets) if (!(free = await portFree(p + off))) break;
    if (free) return p;
  }
  throw new Error(`bench: no free set of ${offsets.length} ports found in ${from}-${to}`);
}

/** nats-server node i's Go profiler listens on the client base port + PROFILER_OFFSET + i (RolloutBenchOptions.natsProfDir). */
const PROFILER_OFFSET = 300;

export async function rolloutBench(agents: number, log: (line: string) => void, options: RolloutBenchOptions = {}): Promise<RolloutRow> {
  const minDelayMs = options.minDelayMs ?? 5;
  const maxDelayMs = options.maxDelayMs ?? 20;
  // Agent state on tmpfs when there is one: 10,000 hosts' checkpoints on one disk is not what a fleet does.
  const root = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const dir = await mkdtemp(join(root, "nf-bench-"));
  const names = Array.from({ length: agents }, (_, i) => (i === 0 ? "backend" : `hv${i}`));
  const hosts: Host[] = names.map((h) => ({ ...inventoryHost(h), role: h === "backend" ? "backend" : "vmhost" }));
  const password = randomBytes(18).toString("base64url");
  const enrollPassword = randomBytes(18).toString("base64url");
  const signing = generateSigningKeys();
  const children: Child[] = [];
  let server: NatsServer | undefined;
  let service: ControlPlane | undefined;
  try {
    const nodes = options.nodes ?? 1;
    if (nodes !== 1 && nodes !== 3) throw new Error(`bench: nodes must be 1 or 3, not ${String(nodes)}`);
    const basePort = await freeBasePort(options.ports, nodes, options.natsProfDir !== undefined);
    const profBasePort = options.natsProfDir ? basePort + PROFILER_OFFSET : undefined;
    server = await NatsServer.start({
      dir: join(dir, "nats"),
      nodes,
      basePort,
      users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)],
      ...(profBasePort !== undefined ? { profBasePort } : {}),
    });
    const node = server.nodes[0]!;
    const monitorUrls = server.nodes.map((n) => n.monitorUrl);
    if (options.maxPayloadMb) {
      // Picked up by the reload that serve() does when it writes the user list.
      for (const n of server.nodes) await appendFile(n.configFile, `max_payload: ${options.maxPayloadMb * 2 ** 20}\n`);
    }
    service = await ControlPlane.connect({
      site: SITE,
      servers: server.urls,
      user: "controller",
      password,
      hosts,
      enrollmentToken: TOKEN,
      enrollmentPassword: enrollPassword,
      signing,
      credentialsDir: join(dir, "credentials"),
      userDirectory: server,
      replicas: nodes,
    });
    await service.serve();
    if (options.maxPayloadMb) {
      const varz = (await (await fetch(`${node.monitorUrl}/varz`, { signal: AbortSignal.timeout(5000) })).json()) as { max_payload: number };
      if (varz.max_payload !== options.maxPayloadMb * 2 ** 20) throw new Error(`bench: nats-server max_payload is ${varz.max_payload}, not ${options.maxPayloadMb} MB`);
    }

    // Agents: enrolled and connected before the clock starts.
    // Host tokens (netfleet hosts token HOST): the site's join token only asks for a pending claim.
    const key = await hostTokenKey(join(dir, "credentials"));
    const tokens = Object.fromEntries(names.map((host) => [host, mintHostTokenWithKey(key, { site: SITE, enrollPassword, host }).token]));
    const serverPids = server.nodes.map((n) => n.process?.pid);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    /** CPU ms as ms per host, 2 decimals. */
    const perHost = (ms: number) => Math.round((ms / agents) * 100) / 100;
    const enrollCpu0 = { server: sum(serverPids.map(procCpuMs)), service: process.cpuUsage() };
    const t = performance.now();
    const parts = options.processes ?? (agents > PER_PROCESS ? 2 : 1);
    const agentFlags = options.agentFlags ?? simulatorNodeFlags(Math.ceil(agents / parts));
    for (let p = 0; p < parts; p++) {
      const mine = names.filter((_, i) => i % parts === p);
      const arg: AgentsArgs = {
        site: SITE,
        servers: server.urls,
        enrollPassword,
        token: TOKEN,
        tokensFile: await writeTokens(join(dir, `tokens-${p}.json`), mine, tokens),
        names: mine,
        stateRoot: join(dir, "agents"),
        minDelayMs,
        maxDelayMs,
        concurrency: 1000,
        ...(options.failHosts ? { failHosts: options.failHosts } : {}),
      };
      const agentsProf = options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`, `--cpu-prof-name=agents${p}-${agents}.cpuprofile`] : [];
      children.push(spawnChild(`agents${p}`, join(HERE, "rollout-agents.ts"), JSON.stringify(arg), log, [...agentFlags, ...agentsProf]));
    }
    const enrollTimeoutMs = options.enrollTimeoutMs ?? 60_000 + agents * 20;
    const ready = await Promise.all(children.map((c) => c.waitFor("ready", enrollTimeoutMs)));
    const enrollMs = Math.round(performance.now() - t);
    const serviceCpu = process.cpuUsage(enrollCpu0.service);
    const agentPids = children.filter((c) => c.name.startsWith("agents")).map((c) => c.child.pid);
    const enrollCpuMsPerHost = {
      agents: perHost(sum(agentPids.map(procCpuMs))),
      server: perHost(sum(serverPids.map(procCpuMs)) - enrollCpu0.server),
      service: perHost((serviceCpu.user + serviceCpu.system) / 1000),
    };
    const enrolled = ready.reduce((s, r) => s + Number(r.enrolled), 0);
    if (enrolled !== agents) throw new Error(`bench: only ${enrolled} of ${agents} agents enrolled`);
    log(`rollout ${agents}: ${agents} agents enrolled in ${enrollMs} ms (agent processes, node ${agentFlags.join(" ") || "(no flags)"}: ${ready.map((r) => `${r.rssMb} MB`).join(", ")}; CPU-ms per host: ${JSON.stringify(enrollCpuMsPerHost)})`);
    const startErrors = ready.reduce((s, r) => s + Number(r.startErrors), 0);
    if (startErrors) log(`rollout ${agents}: NatsAgent.start() threw ${startErrors} times and was retried (first: ${ready.map((r) => r.firstStartError).find(Boolean)})`);

    // The controller, in a process of its own.
    const args: ControllerArgs = {
      site: SITE,
      servers: server.urls,
      user: "controller",
      password,
      enrollPassword,
      token: TOKEN,
      signing,
      credentialsDir: join(dir, "credentials"),
      monitorUrls,
      replicas: nodes,
      hosts,
      applyTimeoutMs: options.applyTimeoutMs ?? 60_000,
      boundOldGeneration: options.controllerFlags === undefined,
      ...(options.batchPercent ? { batchPercent: options.batchPercent } : {}),
    };
    const argFile = join(dir, "controller.json");
    await writeFile(argFile, JSON.stringify(args), { mode: 0o600 });
    // Started as the packaged `netfleet` wrapper starts the CLI (CONTROLLER_NODE_FLAGS), unless told otherwise.
    const execArgv = [...(options.controllerFlags ?? CONTROLLER_NODE_FLAGS), ...(options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`, `--cpu-prof-name=controller-${agents}.cpuprofile`] : [])];
    // The measuring probe (rollout-probe.ts), subscribed before the controller starts.
    const probeArgs: ProbeArgs = { site: SITE, servers: server.urls, user: "controller", password, hosts: agents };
    const probeFile = join(dir, "probe.json");
    await writeFile(probeFile, JSON.stringify(probeArgs), { mode: 0o600 });
    const probe = spawnChild("probe", join(HERE, "rollout-probe.ts"), probeFile, log);
    children.push(probe);
    await probe.waitFor("ready", 30_000);
    const load1 = Math.round(loadavg()[0]! * 10) / 10;
    const controller = spawnChild("controller", join(HERE, "rollout-controller.ts"), argFile, log, execArgv);
    children.push(controller);
    // CPU of nats-server and of the agent processes over the rollout: from the controller's "running" line to its result.
    const others = { server: serverPids, agents: agentPids, probe: [probe.child.pid] };
    /** Each process's CPU so far (ms), by kind. */
    const cpuNow = () => ({ server: others.server.map(procCpuMs), agents: others.agents.map(procCpuMs), probe: others.probe.map(procCpuMs) });
    const cpuAtSpawn = { ...cpuNow(), at: performance.now() };
    // nats-server's CPU profile from here on (natsProfDir): fetched while the rollout runs, written once it returns.
    const natsProfile = profBasePort !== undefined ? takeNatsProfile(profBasePort, options.natsProfSeconds ?? 15, join(options.natsProfDir!, `nats-${agents}.pprof`), log) : undefined;
    const running = await controller.waitFor("running", 120_000);
    const cpuAtStart = cpuNow();
    const machineAtStart = machineCpuMs();
    const vmstatAtStart = vmstatNow();
    {
      // How busy the fleet still was while the controller started (after enrollment): the clock should start on a quiet one.
      const ms = performance.now() - cpuAtSpawn.at;
      const busy = (k: "server" | "agents") => Math.round(cpuAtStart[k].reduce((sum, v, i) => sum + (v - cpuAtSpawn[k][i]!), 0));
      log(`rollout ${agents}: while the controller started (${Math.round(ms)} ms): agents ${busy("agents")} CPU-ms, nats-server ${busy("server")} CPU-ms`);
    }
    const connectionsPerNode = nodes > 1 ? await Promise.all(monitorUrls.map(async (u) => ((await (await fetch(`${u}/varz`, { signal: AbortSignal.timeout(5000) })).json()) as { connections: number }).connections)) : undefined;
    if (connectionsPerNode) log(`rollout ${agents}: ${nodes} nodes, client connections per node ${JSON.stringify(connectionsPerNode)}`);
    const r = await controller.waitFor("result", 120_000 + agents * 20);
    const cpuAtEnd = cpuNow();
    const machine = cpuShares(machineAtStart, machineCpuMs());
    const memory = memoryEvents(vmstatAtStart, vmstatNow());
    await natsProfile;
    await controller.exited;
    // The probe may trail the rollout by a moment (it hears the agents' reports, published after their confirmation); bounded.
    await probe.waitFor("all-reported", 3000).catch(() => undefined);
    const varzAfter = await varzCounters(monitorUrls);
    await stopChild(probe, 10_000);
    const heard = (probe.lines.find((l) => l.event === "probe") ?? {}) as unknown as Partial<ProbeResult>;
    const t0Epoch = running.t0Epoch as number;
    const varzBefore = running.varzBefore as Counters;
    const reportedAt = heard.reportedAt ?? {};
    const publishedAt = heard.publishedAt ?? {};
    const times = Object.values(reportedAt).map((at) => at - t0Epoch).sort((x, y) => x - y);
    // Per host: its revision published -> its applied report heard.
    const latencies = Object.entries(reportedAt).flatMap(([h, at]) => (publishedAt[h] !== undefined ? [at - publishedAt[h]] : [])).sort((x, y) => x - y);
    const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)]! : NaN);
    const reported = Object.keys(reportedAt).length;
    const failedHosts = (r.failedHosts as string[] | undefined) ?? [];
    const failedOrMissing = new Set([...names.filter((h) => reportedAt[h] === undefined), ...failedHosts]).size;
    const messages = varzAfter.in_msgs + varzAfter.out_msgs - (varzBefore.in_msgs + varzBefore.out_msgs) - (heard.messages ?? 0);
    const bytes = varzAfter.in_bytes + varzAfter.out_bytes - (varzBefore.in_bytes + varzBefore.out_bytes) - (heard.bytes ?? 0);
    const spent = (k: "server" | "agents" | "probe") => cpuAtEnd[k].reduce((sum, v, i) => sum + (v - cpuAtStart[k][i]!), 0);
    // What measuring costs: the probe shares the machine's cores with the fleet over the same window.
    log(`rollout ${agents}: the probe used ${Math.round(spent("probe"))} CPU-ms over the rollout`);
    if (r.memory) log(`rollout ${agents}: controller memory (MB) ${JSON.stringify(r.memory)}; plan made, waves started at ${JSON.stringify(r.marks)} ms${r.judgedBefore ? `, the last host judged before each and at the end at ${JSON.stringify(r.judgedBefore)} ms` : ""}`);
    // The agents' own counts (lockout rollbacks, confirmation retries, lost connections): stopped now, before the row is made.
    await Promise.all(children.filter((c) => c !== controller).map((c) => stopChild(c, 30_000)));
    const agentEvents: Record<string, number> = {};
    const erred: Record<string, Set<string>> = {};
    const errorSamples: Record<string, string[]> = {};
    for (const c of children) for (const l of c.lines) if (l.event === "stopped") {
      for (const [k, hs] of Object.entries((l.erredHosts ?? {}) as Record<string, string[]>)) for (const h of hs) (erred[k] ??= new Set()).add(h);
      for (const [k, ss] of Object.entries((l.errorSamples ?? {}) as Record<string, string[]>)) (errorSamples[k] ??= []).push(...ss);
    }
    const agentLoop = children.flatMap((c) => c.lines.filter((l) => l.event === "stopped").map((l) => l.eventLoopDelayMs as { p99: number; max: number }));
    for (const c of children) for (const l of c.lines) if (l.event === "stopped") for (const [k, v] of Object.entries(l.counts as Record<string, number>)) agentEvents[k] = (agentEvents[k] ?? 0) + v;
    const failures = (r.failures as FailureGroup[] | undefined) ?? [];
    if (reported !== agents || r.result !== "success") {
      log(`rollout ${agents}: result ${String(r.result)}, ${reported} of ${agents} reported, events ${JSON.stringify(r.events)}`);
      for (const f of failures) log(`rollout ${agents}:   ${f.hosts} failed: ${f.reason} (e.g. ${f.sample.join(", ")}; judged ${Number.isFinite(f.firstAtMs) && f.firstAtMs !== null ? `${f.firstAtMs}-${f.lastAtMs} ms` : "at the end"})`);
      // Which failed hosts' agents logged errors after enrollment (the rollout's window), and what they said.
      for (const f of failures) for (const [k, hs] of Object.entries(erred)) {
        const both = f.sample.filter((h) => hs.has(h));
        if (both.length) log(`rollout ${agents}:   of "${f.reason}", ${both.join(", ")} logged ${k}`);
      }
    }
    // Errors the agents logged in the rollout's window (confirmation retries, lost connections) are said even when it succeeded: each
    // retry is another put under load, and what the agents were told says why.
    if (Object.keys(erred).length > 0) {
      log(`rollout ${agents}: agent errors after enrollment ${JSON.stringify(Object.fromEntries(Object.entries(erred).map(([k, hs]) => [k, hs.size])))}, e.g. ${JSON.stringify(errorSamples)}`);
    }
    if (reported !== agents || r.result !== "success") {
      log(`rollout ${agents}: agent events ${JSON.stringify(agentEvents)}; event loop delay (ms): controller ${JSON.stringify(r.eventLoopDelayMs)}, agents ${JSON.stringify(agentLoop)}`);
    }
    return {
      agents,
      ...(nodes > 1 ? { nodes } : {}),
      convergeMs: Math.round(times.at(-1) ?? NaN),
      p50Ms: Math.round(pct(50)),
      p99Ms: Math.round(pct(99)),
      maxMs: Math.round(latencies.at(-1) ?? NaN),
      controllerRssMb: r.maxRssMb as number,
      messagesPerHost: Math.round((messages / agents) * 10) / 10,
      bytesPerHost: Math.round(bytes / agents),
      controllerCpuMsPerHost: Math.round(((r.cpuMs as number) / agents) * 100) / 100,
      agentCpuMsPerHost: perHost(spent("agents")),
      serverCpuMsPerHost: perHost(spent("server")),
      runMs: r.runMs as number,
      enrollMs,
      enrollCpuMsPerHost,
      waves: r.waves as number,
      failed: failedOrMissing,
      result: r.result as string,
      failedReports: heard.failedReports?.length ?? 0,
      rolledBackReports: heard.rolledBackReports?.length ?? 0,
      failures,
      agentEvents,
      eventLoopDelayMs: { controller: r.eventLoopDelayMs as { p99: number; max: number }, agents: agentLoop },
      ...(options.maxPayloadMb ? { natsMaxPayloadMb: options.maxPayloadMb } : {}),
      ...(connectionsPerNode ? { connectionsPerNode } : {}),
      load1,
      ...(machine ? { machineCpu: machine } : {}),
      ...(memory ? { machineMemory: memory } : {}),
    };
  } catch (err) {
    // What the server saw is usually the explanation.
    for (const n of server?.nodes ?? []) {
      const tail = (await readFile(n.logFile, "utf8").catch(() => "")).trimEnd().split("\n").slice(-15);
      for (const line of tail) log(`nats-server ${n.name}: ${line}`);
    }
    throw err;
  } finally {
    await Promise.all(children.map((c) => stopChild(c, 30_000)));
    await service?.close().catch(() => {});
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * What makes a bench run unsound, one line each (empty: sound): a rollout row that could not be
 * measured, whose rollout did not end in success (failed: stopped and reverted; partial), that
 * counted failed hosts, whose hosts reported a failed apply or a lockout rollback, or where not every
 * host converged; a no-op reconcile that ran a mutating command. With `rolloutRuns` (run.ts --runs),
 * every run is judged, not only each size's median row. The smoke test
 * (test/nats/bench-smoke.test.ts) asserts this is empty; figures themselves are never judged here.
 */
export function benchProblems(results: { rollout: readonly RolloutRow[]; rolloutRuns?: readonly RolloutRow[]; noop?: readonly { role: string; mutatingCommands: number }[] }): string[] {
  const out: string[] = [];
  // Every run when run.ts kept them (--runs), else the one row per size.
  for (const r of results.rolloutRuns?.length ? results.rolloutRuns : results.rollout) {
    const at = `rollout of ${r.agents} agents${(r.nodes ?? 1) > 1 ? ` on ${r.nodes} nodes` : ""}${r.run !== undefined ? ` (run ${r.run})` : ""}`;
    if (r.error) {
      out.push(`${at}: not measured: ${r.error}`);
      continue;
    }
    if (r.result !== "success") out.push(`${at}: result ${r.result ?? "unknown"}`);
    if (r.failed !== 0) out.push(`${at}: ${r.failed} hosts failed or not converged${r.failures?.length ? ` (${r.failures.map((f) => `${f.hosts}: ${f.reason}`).join("; ")})` : ""}`);
    if (r.failedReports) out.push(`${at}: ${r.failedReports} hosts reported a failed apply`);
    if (r.rolledBackReports) out.push(`${at}: ${r.rolledBackReports} hosts undid the revision (lockout rollback)`);
    if (!Number.isFinite(r.convergeMs)) out.push(`${at}: no convergence time`);
  }
  for (const n of results.noop ?? []) if (n.mutatingCommands !== 0) out.push(`no-op reconcile of a ${n.role}: ${n.mutatingCommands} mutating commands`);
  return out;
}

/**
 * sh scripts/node.sh test/bench/rollout.ts N [--cpu-prof DIR] [--max-payload-mb MB] [--processes P]
 * [--batch-percent B] [--enroll-timeout-ms MS] [--apply-timeout-ms MS] [--nodes 1|3] [--controller-flag FLAG ...] [--agent-flag FLAG ...]
 * [--nats-prof DIR [--nats-prof-seconds S]]: one row, as JSON.
 * --nodes 3: a 3-node JetStream cluster, KV replicas 3 (RolloutBenchOptions.nodes).
 */
/**
 * Fetches nats-server's CPU profile of `seconds` from its Go profiler on 127.0.0.1:`port` (net/http/pprof
 * `/debug/pprof/profile`) and writes it to `file`; a failure is logged, never thrown. Bounded: `seconds` + 30 s.
 */
async function takeNatsProfile(port: number, seconds: number, file: string, log: (line: string) => void): Promise<void> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/debug/pprof/profile?seconds=${seconds}`, { signal: AbortSignal.timeout((seconds + 30) * 1000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, Buffer.from(await res.arrayBuffer()));
    log(`nats-server CPU profile of ${seconds} s from the controller's start: ${file} (sh scripts/node.sh test/bench/pprof.ts ${file})`);
  } catch (err) {
    log(`nats-server CPU profile not taken: ${(err as Error).message}`);
  }
}

if (import.meta.main) {
  const n = Number(process.argv[2] ?? 100);
  const i = process.argv.indexOf("--cpu-prof");
  const flag = (name: string) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : undefined);
  /** Every value of a repeatable option (`--name VALUE`, in order). */
  const repeated = (name: string) => process.argv.flatMap((x, k) => (x === name ? [process.argv[k + 1]!] : []));
  const m = process.argv.indexOf("--max-payload-mb");
  const nodes = flag("--nodes");
  if (!(Number.isInteger(n) && n >= 1) || (nodes !== undefined && nodes !== 1 && nodes !== 3)) {
    process.stderr.write(`rollout.ts: ${!(Number.isInteger(n) && n >= 1) ? `N must be a whole number of agents, not ${process.argv[2]}` : `--nodes must be 1 or 3, not ${process.argv[process.argv.indexOf("--nodes") + 1]}`}\n`);
    process.exit(2);
  }
  const row = await rolloutBench(n, (l) => process.stderr.write(`[bench] ${l}\n`), {
    ...(i > 0 ? { cpuProfDir: process.argv[i + 1]! } : {}),
    ...(process.argv.includes("--nats-prof") ? { natsProfDir: process.argv[process.argv.indexOf("--nats-prof") + 1]! } : {}),
    ...(flag("--nats-prof-seconds") ? { natsProfSeconds: flag("--nats-prof-seconds")! } : {}),
    ...(m > 0 ? { maxPayloadMb: Number(process.argv[m + 1]) } : {}),
    ...(flag("--processes") ? { processes: flag("--processes")! } : {}),
    ...(flag("--batch-percent") ? { batchPercent: flag("--batch-percent")! } : {}),
    ...(flag("--enroll-timeout-ms") ? { enrollTimeoutMs: flag("--enroll-timeout-ms")! } : {}),
    ...(flag("--apply-timeout-ms") ? { applyTimeoutMs: flag("--apply-timeout-ms")! } : {}),
    ...(nodes !== undefined ? { nodes: nodes as 1 | 3 } : {}),
    // --controller-flag FLAG (repeatable) in place of the launch flags; --controller-flag none: no flag at all.
    ...(process.argv.includes("--controller-flag") ? { controllerFlags: repeated("--controller-flag").filter((f) => f !== "none") } : {}),
    // --agent-flag FLAG (repeatable): a Node flag of the agent processes.
    ...(process.argv.includes("--agent-flag") ? { agentFlags: repeated("--agent-flag") } : {}),
  });
  process.stdout.write(JSON.stringify(row) + "\n");
}
