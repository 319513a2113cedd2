/**
 * The fleet agent as `netfleet-agent run` starts it (fleet-mode.ts
 * runFleetAgent: pino log lines on stdout, the /metrics listener,
 * NatsAgent, runUntilStopped), on a simulated sysctl host whose state is a
 * file (SimulatedHostRunner): what metrics.test.ts scrapes after a
 * reconcile, a drift repair and a forced reconnect. One JSON argument.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
const { Toolbox } = await import("@netfleet/agent");
const { SimulatedHostRunner } = await import("@netfleet/agent/testing");
const { runFleetAgent } = await import("../../packages/agent/src/fleet-mode.ts");
const { simFacts } = await import("./sim-facts.ts");

const a = JSON.parse(process.argv[2]!) as {
  site: string;
  servers: string[];
  enrollPassword: string;
  token: string;
  name: string;
  stateDir: string;
  runDir: string;
  hostFile: string;
  metricsPort: number;
  logLevel?: "info" | "debug";
  intervalMs: number;
};
process.exitCode = await runFleetAgent({
  site: a.site,
  servers: a.servers,
  enrollment: { password: a.enrollPassword, token: a.token },
  name: a.name,
  stateDir: a.stateDir,
  tools: new Toolbox({ runDir: a.runDir }),
  intervalMs: a.intervalMs,
  flowIntervalMs: 60_000,
  confirmDeadlineMs: 10_000,
  heartbeatMs: 500,
  watchEvents: false,
  metrics: { host: "127.0.0.1", port: a.metricsPort },
  ...(a.logLevel ? { logLevel: a.logLevel } : {}),
  overrides: { runner: new SimulatedHostRunner({ stateFile: a.hostFile }), gatherFacts: simFacts, enrollRetryMs: 300, reconnectTimeWaitMs: 200, resyncMs: 1000 },
});
