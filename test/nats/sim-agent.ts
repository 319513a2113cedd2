/**
 * A simulated fleet agent as its own process (tests that SIGKILL agents, and
 * the NATS fuzz suite, which watches agents by pid): NatsAgent (the real
 * control-plane client, engine, daemon, lease follower and check mode) on a
 * SimulatedHostRunner whose host state lives in a file. One JSON argument;
 * JSON log lines on stdout. An uncaught exception or unhandled rejection is
 * written to stderr and kills the process (Node's default). It starts and
 * stops as `netfleet-agent run` does (fleet-mode.ts runUntilStopped: logs
 * `ready`, stops on SIGTERM/SIGINT within 10 s in every state, exit code 0,
 * or 1 when it could not start).
 */
import { enableCompileCache } from "node:module";

// Node keeps the type-stripped modules on disk (as the CLIs do): agents that tests start by the handful start faster.
enableCompileCache();
const { NatsAgent, Toolbox } = await import("@netfleet/agent");
const { SimulatedHostRunner } = await import("@netfleet/agent/testing");
const { simFacts } = await import("./sim-facts.ts");
const { runUntilStopped } = await import("../../packages/agent/src/fleet-mode.ts");

const a = JSON.parse(process.argv[2]!) as {
  site: string;
  servers: string[];
  enrollPassword: string;
  token: string;
  name: string;
  stateDir: string;
  hostFile: string;
  /** The agent's run dir (lease files); default the Toolbox's. */
  runDir?: string;
  delayMs?: number;
  intervalMs?: number;
  flowIntervalMs?: number;
  heartbeatMs?: number;
  resyncMs?: number;
  confirmDeadlineMs?: number;
  reconnectTimeWaitMs?: number;
  reconnectMaxMs?: number;
};
const log = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: Date.now(), ...e }) + "\n");
const agent = new NatsAgent({
  site: a.site,
  servers: a.servers,
  enrollment: { password: a.enrollPassword, token: a.token },
  name: a.name,
  stateDir: a.stateDir,
  runner: new SimulatedHostRunner({ stateFile: a.hostFile, ...(a.delayMs ? { delayMs: a.delayMs } : {}) }),
  tools: new Toolbox(a.runDir ? { runDir: a.runDir } : {}),
  intervalMs: a.intervalMs ?? 60_000,
  flowIntervalMs: a.flowIntervalMs ?? 60_000,
  watchEvents: false,
  heartbeatMs: a.heartbeatMs ?? 500,
  resyncMs: a.resyncMs ?? 1000,
  enrollRetryMs: 300,
  reconnectTimeWaitMs: a.reconnectTimeWaitMs ?? 200,
  ...(a.reconnectMaxMs !== undefined ? { reconnectMaxMs: a.reconnectMaxMs } : {}),
  confirmDeadlineMs: a.confirmDeadlineMs ?? 10_000,
  gatherFacts: simFacts,
  log,
});
process.exitCode = await runUntilStopped(agent, log);
