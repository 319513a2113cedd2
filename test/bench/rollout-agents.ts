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
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { NatsAgent, Toolbox, type Command, type Runner, type RunResult } from "@netfleet/agent";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { simFacts } from "../nats/sim-facts.ts";

export interface AgentsArgs {
  site: string;
  servers: string[];
  enrollPassword: string;
  token: string;
  names: string[];
  stateRoot: string;
  minDelayMs: number;
  maxDelayMs: number;
  /** Agents starting (enrolling) at once. */
  concurrency: number;
}

/** SimulatedHostRunner behind a random per-command latency. */
class LatencyRunner implements Runner {
  private readonly inner = new SimulatedHostRunner();
  private readonly min: number;
  private readonly span: number;
  constructor(min: number, max: number) {
    this.min = min;
    this.span = Math.max(0, max - min);
  }
  async run(command: Command, options?: { allowFailure?: boolean }): Promise<RunResult> {
    const ms = this.min + Math.random() * this.span;
    await new Promise((r) => setTimeout(r, ms));
    const result = await this.inner.run(command, options);
    return { ...result, durationMs: ms };
  }
}

const a = JSON.parse(process.argv[2]!) as AgentsArgs;
const out = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");
// Log events are only counted: printing 10,000 agents' lines would be the benchmark.
const counts: Record<string, number> = {};
const log = (e: Record<string, unknown>) => {
  const k = String(e.event);
  counts[k] = (counts[k] ?? 0) + 1;
};
const FAR = 600_000; // periodic work (drift passes, heartbeats, resyncs) stays out of the measured window
await mkdir(a.stateRoot, { recursive: true });
const agents = a.names.map(
  (name) =>
    new NatsAgent({
      site: a.site,
      servers: a.servers,
      enrollment: { password: a.enrollPassword, token: a.token },
      name,
      stateDir: join(a.stateRoot, name),
      runner: new LatencyRunner(a.minDelayMs, a.maxDelayMs),
      tools: new Toolbox(),
      intervalMs: FAR,
      flowIntervalMs: FAR,
      watchEvents: false,
      heartbeatMs: FAR,
      resyncMs: FAR,
      enrollRetryMs: 15_000,
      reconnectTimeWaitMs: 500,
      gatherFacts: simFacts,
      log,
    }),
);

let stopping: Promise<void> | undefined;
function stop(): Promise<void> {
  stopping ??= (async () => {
    for (let i = 0; i < agents.length; i += 500) await Promise.all(agents.slice(i, i + 500).map((x) => x.stop().catch(() => {})));
    out({ event: "stopped", counts, rssMb: Math.round(process.memoryUsage().rss / 2 ** 20) });
    process.exit(0);
  })();
  return stopping;
}
process.once("SIGTERM", () => void stop());
createInterface({ input: process.stdin })
  .on("line", (line) => line.trim() === "stop" && void stop())
  .on("close", () => void stop());

const t = performance.now();
let next = 0;
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
  out({ event: "ready", agents: agents.length, enrolled, startErrors: startErrors.length, firstStartError: startErrors[0], ms: Math.round(performance.now() - t), rssMb: Math.round(process.memoryUsage().rss / 2 ** 20) });
}
