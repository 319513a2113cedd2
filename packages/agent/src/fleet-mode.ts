import { ExecaRunner } from "./exec/runner.ts";
import { stopSignal } from "./file-mode.ts";
import { SystemdReadiness } from "./systemd.ts";
import type { Toolbox } from "./tools.ts";

/** `netfleet-agent run --site --nats --token`: checked settings of the fleet agent. */
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
}

/** The fleet agent, until SIGTERM/SIGINT: logs JSON lines; exit code 1 when it could not start, else 0. */
export async function runFleetAgent(s: FleetSettings): Promise<number> {
  const print = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), ...event }) + "\n");
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
  const agent = new NatsAgent({
    site: s.site,
    servers: s.servers,
    enrollment: s.enrollment,
    ...(s.name ? { name: s.name } : {}),
    stateDir: s.stateDir,
    runner: new ExecaRunner(),
    tools: s.tools,
    intervalMs: s.intervalMs,
    flowIntervalMs: s.flowIntervalMs,
    confirmDeadlineMs: s.confirmDeadlineMs,
    heartbeatMs: s.heartbeatMs,
    watchEvents: s.watchEvents,
    log,
  });
  const stop = stopSignal();
  log({ event: "start", site: s.site, name: s.name, servers: s.servers, pid: process.pid });
  const started = agent.start().then(
    () => log({ event: "ready", host: agent.client.host }),
    (err: unknown) => {
      log({ event: "fatal", error: (err as Error).message });
      throw err;
    },
  );
  const failed = await Promise.race([stop.then(() => false), started.then(() => stop.then(() => false), () => true)]);
  await agent.stop();
  log({ event: "stop", host: agent.client.host });
  return failed ? 1 : 0;
}
