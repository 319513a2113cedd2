/**
 * A simulated fleet agent as its own process (tests that SIGKILL agents):
 * NatsAgent with the real engine on a SimulatedHostRunner whose host state
 * lives in a file. One JSON argument; JSON log lines on stdout.
 */
import { NatsAgent, SimulatedHostRunner, Toolbox } from "@netfleet/agent";
import { simFacts } from "./sim-facts.ts";

const a = JSON.parse(process.argv[2]!) as {
  site: string;
  servers: string[];
  enrollPassword: string;
  token: string;
  name: string;
  stateDir: string;
  hostFile: string;
  delayMs?: number;
  intervalMs?: number;
  confirmDeadlineMs?: number;
};
const log = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: Date.now(), ...e }) + "\n");
const agent = new NatsAgent({
  site: a.site,
  servers: a.servers,
  enrollment: { password: a.enrollPassword, token: a.token },
  name: a.name,
  stateDir: a.stateDir,
  runner: new SimulatedHostRunner({ stateFile: a.hostFile, ...(a.delayMs ? { delayMs: a.delayMs } : {}) }),
  tools: new Toolbox(),
  intervalMs: a.intervalMs ?? 60_000,
  flowIntervalMs: 60_000,
  watchEvents: false,
  heartbeatMs: 500,
  resyncMs: 1000,
  enrollRetryMs: 300,
  reconnectTimeWaitMs: 200,
  confirmDeadlineMs: a.confirmDeadlineMs ?? 10_000,
  gatherFacts: simFacts,
  log,
});
process.once("SIGTERM", () => void agent.stop().then(() => process.exit(0)));
await agent.start();
log({ event: "ready", host: agent.client.host });
