/**
 * One process of simulated fleet agents for the rollout benchmark
 * (spawned by rollout.ts; one JSON argument). Each agent is the real
 * NatsAgent (enrollment, signed desired state, engine, confirmation,
 * reports) on a SimulatedHostRunner; every command it runs sleeps a
 * uniformly random MIN..MAX ms first, the stand-in for real tool latency.
 *
 * Protocol on stdout, one JSON line each: {"event":"ready",...} once every
 * agent is enrolled and connected, {"event":"stopped",...} at the end.
 * A line "stop" on stdin (or stdin closing, or SIGTERM) stops every agent.
 * A line "back <id>" on stdin answers {"event":"back","id":...,"at":{name:
 * ms since the epoch},"lost":n}: when each agent last came back (its
 * connection reconnected, or a new one set up: events `reconnected` and
 * `connected`), and how many connections were lost for good (restart.ts).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { ExecError, NatsAgent, Toolbox, type Command, type Runner, type RunResult } from "@netfleet/agent";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { simFacts } from "../nats/sim-facts.ts";

export interface AgentsArgs {
  site: string;
  servers: string[];
  enrollPassword: string;
  /** The token every agent enrolls with, unless `tokensFile` names one for it (host tokens: one per host, single use). */
  token: string;
  /** A JSON file { name: token } (0600; a file, not an argument: thousands of tokens pass no exec's argument limit). */
  tokensFile?: string;
  names: string[];
  stateRoot: string;
  minDelayMs: number;
  maxDelayMs: number;
  /** Agents starting (enrolling) at once. */
  concurrency: number;
  /**
   * Hosts whose every `sysctl -w` fails (exit 255, as sysctl(8) does on a key it cannot write): a fault
   * injected so that the smoke test sees a failed apply, a failed rollout and its revert (bench-smoke.test.ts).
   */
  failHosts?: string[];
}

/** SimulatedHostRunner behind a random per-command latency. */
class LatencyRunner implements Runner {
  private readonly inner = new SimulatedHostRunner();
  private readonly min: number;
  private readonly span: number;
  private readonly failWrites: boolean;
  constructor(min: number, max: number, failWrites = false) {
    this.min = min;
    this.span = Math.max(0, max - min);
    this.failWrites = failWrites;
  }
  async run(command: Command, options?: { allowFailure?: boolean }): Promise<RunResult> {
    const ms = this.min + Math.random() * this.span;
    await new Promise((r) => setTimeout(r, ms));
    if (this.failWrites && command.argv[0] === "sysctl" && command.argv[1] === "-w") {
      const stderr = `sysctl: permission denied on key "${command.argv[2]?.split("=")[0]}" (injected by the bench)`;
      if (!options?.allowFailure) throw new ExecError(command.argv, 255, stderr);
      return { stdout: "", stderr, exitCode: 255, durationMs: ms };
    }
    const result = await this.inner.run(command, options);
    return { ...result, durationMs: ms };
  }
}

const a = JSON.parse(process.argv[2]!) as AgentsArgs;
const out = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");
// Log events are only counted: printing 10,000 agents' lines would be the benchmark.
const counts: Record<string, number> = {};
/** Per agent: when it last came back (reconnected, or a fresh connection set up), ms since the epoch. */
const back = new Map<string, number>();
/** After enrollment (the rollout's window): hosts whose agent logged an error event, and the first messages of each such event. */
const erredHosts: Record<string, string[]> = {};
const errorSamples: Record<string, string[]> = {};
let enrolledAll = false;
const logFor = (name: string) => (e: Record<string, unknown>) => {
  const k = String(e.event);
  counts[k] = (counts[k] ?? 0) + 1;
  if (enrolledAll && /error|lost|rollback|retry/.test(k)) {
    (erredHosts[k] ??= []).push(name);
    const samples = (errorSamples[k] ??= []);
    if (samples.length < 5) samples.push(`${name}: ${String(e.error ?? "")}`);
  }
  if (k === "reconnected" || k === "connected") back.set(name, Date.now());
};
const FAR = 600_000; // periodic work (drift passes, heartbeats, resyncs) stays out of the measured window
await mkdir(a.stateRoot, { recursive: true });
const tokens = a.tokensFile ? (JSON.parse(await readFile(a.tokensFile, "utf8")) as Record<string, string>) : {};
const agents = a.names.map(
  (name) =>
    new NatsAgent({
      site: a.site,
      servers: a.servers,
      enrollment: { password: a.enrollPassword, token: tokens[name] ?? a.token },
      name,
      stateDir: join(a.stateRoot, name),
      runner: new LatencyRunner(a.minDelayMs, a.maxDelayMs, a.failHosts?.includes(name)),
      tools: new Toolbox(),
      intervalMs: FAR,
      flowIntervalMs: FAR,
      watchEvents: false,
      heartbeatMs: FAR,
      resyncMs: FAR,
      enrollRetryMs: 15_000,
      reconnectTimeWaitMs: 500,
      gatherFacts: simFacts,
      log: logFor(name),
    }),
);

/**
 * Env NF_BENCH_ALLOC_PROF=DIR: V8's sampling heap profiler over the rollout's window (from "ready" to
 * "stop"), counting objects the collector has freed as well (HeapProfiler.startSampling's
 * includeObjectsCollectedByMajorGC/MinorGC, Chrome DevTools Protocol), so that it says where the
 * agents allocate, garbage included, by stack: DIR/alloc-PID.heapprofile (DevTools' format).
 */
let allocations: { stop(): Promise<void> } | undefined;
async function sampleAllocations(dir: string): Promise<{ stop(): Promise<void> }> {
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  session.connect();
  await session.post("HeapProfiler.startSampling", { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
  return {
    async stop() {
      const { profile } = (await session.post("HeapProfiler.stopSampling")) as { profile: unknown };
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `alloc-${process.pid}.heapprofile`), JSON.stringify(profile));
      session.disconnect();
    },
  };
}

const loop = monitorEventLoopDelay({ resolution: 20 });
let stopping: Promise<void> | undefined;
function stop(): Promise<void> {
  stopping ??= (async () => {
    await allocations?.stop();
    for (let i = 0; i < agents.length; i += 500) await Promise.all(agents.slice(i, i + 500).map((x) => x.stop().catch(() => {})));
    // How late this process's timers ran while it lived (ms): a saturated event loop makes every agent's request time out.
    out({ event: "stopped", counts, erredHosts, errorSamples, rssMb: Math.round(process.memoryUsage().rss / 2 ** 20), eventLoopDelayMs: { p99: Math.round(loop.percentile(99) / 1e6), max: Math.round(loop.max / 1e6) } });
    process.exit(0);
  })();
  return stopping;
}
process.once("SIGTERM", () => void stop());
createInterface({ input: process.stdin })
  .on("line", (line) => {
    const [word, id] = line.trim().split(/\s+/);
    if (word === "stop") void stop();
    if (word === "back") out({ event: "back", id, at: Object.fromEntries(back), lost: counts["connection-lost"] ?? 0, rollbacks: counts["lockout-rollback"] ?? 0 });
  })
  .on("close", () => void stop());

const t = performance.now();
let next = 0;
// Measured from the end of enrollment on (the "ready" line resets it): the rollout's window.
const startErrors: string[] = [];
await Promise.all(
  Array.from({ length: Math.min(a.concurrency, agents.length) }, async () => {
    while (next < agents.length && !stopping) {
      const agent = agents[next++]!;
      // NatsAgent.start() can throw when the server drops a fresh connection (seen during the
      // user reloads of a 10,000-agent enrollment); counted, and started again, at most 3 times.
      for (let attempt = 1; ; attempt++) {
        try {
          await agent.start();
          break;
        } catch (err) {
          startErrors.push((err as Error).message);
          if (attempt >= 3 || stopping) break;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    }
  }),
);
if (!stopping) {
  const enrolled = agents.filter((x) => x.client.host !== undefined).length;
  loop.reset();
  loop.enable();
  enrolledAll = true;
  if (process.env.NF_BENCH_ALLOC_PROF) allocations = await sampleAllocations(process.env.NF_BENCH_ALLOC_PROF);
  out({ event: "ready", agents: agents.length, enrolled, startErrors: startErrors.length, firstStartError: startErrors[0], ms: Math.round(performance.now() - t), rssMb: Math.round(process.memoryUsage().rss / 2 ** 20) });
}
