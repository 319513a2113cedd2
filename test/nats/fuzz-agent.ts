/**
 * A fleet agent as its own process for the NATS fuzz suite: NatsAgent (the
 * real control-plane client, engine, daemon, lease follower and check mode)
 * on a SimulatedHostRunner whose sysctls live in a file, every path inside
 * the test's temp dir (state, run dir with the lease files). One JSON
 * argument; JSON log lines on stdout. An uncaught exception or unhandled
 * rejection is written to stderr and kills the process (Node's default),
 * which the suite sees by pid.
 */
import { enableCompileCache } from "node:module";

// Node keeps the type-stripped modules on disk (as the CLIs do): the suite's four agents start faster.
enableCompileCache();
const { NatsAgent, SimulatedHostRunner, Toolbox } = await import("@netfleet/agent");
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
};
const log = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: Date.now(), ...e }) + "\n");
const agent = new NatsAgent({
  site: a.site,
  servers: a.servers,
  enrollment: { password: a.enrollPassword, token: a.token },
  name: a.name,
  stateDir: a.stateDir,
  runner: new SimulatedHostRunner({ stateFile: a.hostFile }),
  tools: new Toolbox({ runDir: a.runDir }),
  intervalMs: 600_000,
  flowIntervalMs: 600_000,
  watchEvents: false,
  heartbeatMs: 1000,
  resyncMs: 600_000,
  enrollRetryMs: 300,
  reconnectTimeWaitMs: 200,
  confirmDeadlineMs: 10_000,
  gatherFacts: simFacts,
  log,
});
process.once("SIGTERM", () => void agent.stop().then(() => process.exit(0)));
await agent.start();
log({ event: "ready", host: agent.client.host });
