import { createEventLog, formatMetricsListen, LogLevelError, resolveLogLevel, startMetricsServer, type LogLevel, type MetricsListen } from "@netfleet/shared";
import { ExecaRunner } from "./exec/runner.ts";
import { stopSignal } from "./file-mode.ts";
import { AgentMetrics } from "./metrics.ts";
import type { NatsAgentOptions } from "./nats-agent.ts";
import { SystemdReadiness } from "./systemd.ts";
import type { Toolbox } from "./tools.ts";
import { AGENT_VERSION } from "./version.ts";

/** `netfleet-agent run --site --nats --token-file`: checked settings of the fleet agent. */
export interface FleetSettings {
  site: string;
  servers: string[];
  /** From the site's join token: the enrollment NATS password, and the whole token. */
  enrollment: { password: string; token: string };
  name?: string;
  stateDir: string;
  tools: Toolbox;
  intervalMs: number;
  flowIntervalMs: number;
  confirmDeadlineMs: number;
  heartbeatMs: number;
  watchEvents: boolean;
  /** Where GET /metrics is served (metrics.ts); undefined: no listener (`--metrics off`). */
  metrics?: MetricsListen;
  /** `--log-level` (agent.json's logLevel arrives as it); else NETFLEET_LOG_LEVEL, else info (resolveLogLevel). */
  logLevel?: LogLevel;
  /** Tests and benchmarks: a simulated host (runner, facts) and shorter timers; a real agent leaves it out. */
  overrides?: Partial<Pick<NatsAgentOptions, "runner" | "gatherFacts" | "enrollRetryMs" | "reconnectTimeWaitMs" | "resyncMs">>;
}

/**
 * The fleet agent, until SIGTERM/SIGINT (runUntilStopped: it stops within
 * 10 s in every state, NATS reachable or not): logs JSON lines with levels
 * on stdout (createEventLog; journald keeps them under systemd) and serves
 * Prometheus metrics on `s.metrics` (AgentMetrics). Exit code 1 when it
 * could not start, 2 when NETFLEET_LOG_LEVEL holds no level (one line on
 * stderr), else 0.
 *
 * A metrics listener that cannot listen (address in use, not an address of
 * this host) is logged as `metrics-unavailable` (level error) and the agent
 * runs on without it: keeping the host's network converged matters more
 * than its counters.
 */
export async function runFleetAgent(s: FleetSettings): Promise<number> {
  let level: LogLevel;
  try {
    level = resolveLogLevel({ flag: s.logLevel });
  } catch (err) {
    if (!(err instanceof LogLevelError)) throw err;
    process.stderr.write(`netfleet-agent run: ${err.message}\n`);
    return 2;
  }
  const print = createEventLog({ level });
  // Ready for systemd (and so for libvirtd's guests, ordered after us) once the VM port rules of
  // the checkpointed assignment are in; with no checkpoint there is nothing of ours to protect yet.
  // Only OVS is needed for that: virsh here would wait for libvirtd, which waits for us.
  const readiness = new SystemdReadiness(print);
  const log = (event: Record<string, unknown>) => {
    print(event);
    if (event.event === "ports-ready") readiness.ready("VM port rules in place");
  };
  // The NATS client is loaded only by the fleet agent: `apply` and file-mode `run` start faster without it.
  const { NatsAgent } = await import("./nats-agent.ts");
  const { AgentState } = await import("./fleet/state.ts");
  if ((await new AgentState(s.stateDir).checkpoint().catch(() => ({ current: undefined }))).current === undefined) readiness.ready("no checkpoint");
  const { runner, ...tuning } = s.overrides ?? {};
  const metrics = new AgentMetrics({ version: AGENT_VERSION });
  const server = s.metrics ? await startMetricsServer(s.metrics, () => metrics.page(), log) : undefined;
  const agent = new NatsAgent({
    site: s.site,
    servers: s.servers,
    enrollment: s.enrollment,
    ...(s.name ? { name: s.name } : {}),
    stateDir: s.stateDir,
    runner: runner ?? new ExecaRunner(),
    tools: s.tools,
    intervalMs: s.intervalMs,
    flowIntervalMs: s.flowIntervalMs,
    confirmDeadlineMs: s.confirmDeadlineMs,
    heartbeatMs: s.heartbeatMs,
    watchEvents: s.watchEvents,
    log,
    metrics,
    ...tuning,
  });
  log({ event: "start", site: s.site, name: s.name, servers: s.servers, pid: process.pid });
  log({
    event: "settings",
    level: "debug",
    stateDir: s.stateDir,
    runDir: s.tools.runDir,
    intervalMs: s.intervalMs,
    flowIntervalMs: s.flowIntervalMs,
    confirmDeadlineMs: s.confirmDeadlineMs,
    heartbeatMs: s.heartbeatMs,
    watchEvents: s.watchEvents,
    metrics: s.metrics ? formatMetricsListen(s.metrics) : "off",
    logLevel: level,
  });
  try {
    return await runUntilStopped(agent, log);
  } finally {
    await server?.close();
  }
}

/** How long stopping may take before the process exits anyway (ms): under the 10 s a stop is allowed, with room for Node's exit. */
export const STOP_GRACE_MS = 8000;

/** What runUntilStopped drives: NatsAgent, or anything with its start/stop and host name. */
export interface StoppableAgent {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly client: { readonly host: string | undefined };
}

/**
 * Starts `agent` and runs it until SIGTERM or SIGINT (`stop`: another
 * trigger, for tests), then stops it; resolves with the exit code: 1 when
 * it could not start, else 0. Logs `ready`, then `stop`.
 *
 * The process ends within {@link STOP_GRACE_MS} of the signal in every
 * state: connecting or enrolling with NATS unreachable (the pending connect
 * is abandoned, connection.ts connectNats), reconnecting, idle, or applying.
 * An apply still running then is abandoned (logged `stop-timeout`, exit 0):
 * like a crash in the middle of an apply, its revision is still pending in
 * the checkpoint, and the next start converges to the last confirmed
 * assignment before anything else, then fetches and confirms the new one
 * again (FleetMember.start); a stop is never a lockout rollback. The timer
 * that enforces this is unref'd: it never keeps an idle process alive, and
 * exits one that something else (a dial to a silent server, up to 5 s)
 * would keep alive past the grace. A second SIGTERM or SIGINT ends the
 * process at once (Node's default: the handlers are `once`).
 */
export async function runUntilStopped(agent: StoppableAgent, log: (event: Record<string, unknown>) => void, stop: Promise<void> = stopSignal()): Promise<number> {
  let stopRequested = false;
  void stop.then(() => (stopRequested = true));
  const started = agent.start().then(
    // start() also resolves when a stop came first: that is no "ready".
    () => void (stopRequested || log({ event: "ready", host: agent.client.host })),
    (err: unknown) => {
      log({ event: "fatal", error: (err as Error).message });
      throw err;
    },
  );
  const failed = await Promise.race([stop.then(() => false), started.then(() => stop.then(() => false), () => true)]);
  const code = failed ? 1 : 0;
  const stopping = Date.now();
  const watchdog = setTimeout(() => {
    log({ event: "stop-timeout", host: agent.client.host, afterMs: Date.now() - stopping });
    process.exit(code);
  }, STOP_GRACE_MS);
  watchdog.unref();
  await agent.stop();
  log({ event: "stop", host: agent.client.host, ms: Date.now() - stopping });
  return code;
}
