import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { DNS_LABEL, DecodeError, decodeAssignment, parseJoinToken } from "@netfleet/shared";
import { reconcile, summarize } from "./engine.ts";
import { ExecaRunner } from "./exec/runner.ts";
import type { ResourceResult } from "./resources/types.ts";
import { Toolbox } from "./tools.ts";
import { AgentDaemon } from "./daemon.ts";
import { SystemdReadiness } from "./systemd.ts";
import { unwatchFile, watchFile } from "node:fs";
import type { HostAssignment } from "@netfleet/shared";

const HELP = `netfleet-agent — reconciles this host to its netfleet assignment

Usage:
  netfleet-agent apply --assignment FILE [--name N | --any-host] [--check] [--json] [tool options]
  netfleet-agent run --assignment FILE [--name N | --any-host] [--interval S] [--flow-interval S] [tool options]
      FILE must be this host's assignment: its "host" must be --name (default:
      the hostname), else nothing is changed and the exit code is 2.
      --any-host applies another host's document on purpose (labs).
      keeps the host converged: follows OVS port changes and libvirt domain
      events, re-reads FILE when it changes, logs JSON lines; stopping it
      (SIGTERM) leaves the host as it is
  netfleet-agent run --site S --nats URL[,URL...] --token T|--token-file F [--name N] [--state-dir DIR]
                     [--interval S] [--flow-interval S] [--confirm-deadline S] [--heartbeat S]
                     [--no-watch] [tool options]
      the fleet agent: enrolls with the controller (netfleet serve) using the
      site's join token (netfleet token prints it; a wrong one quarantines the
      host until netfleet hosts approve), watches its own signed assignment,
      applies it, reports results and heartbeats, repairs drift every
      --interval and on OVS/libvirt events (reported as corrective), undoes
      an apply when NATS cannot be reached within --confirm-deadline after it
      (default 20 s). Keeps the host as it is while NATS is gone; reconnects
      with exponential backoff and jitter and resyncs. --name: the name to
      enroll as (default: the hostname). --state-dir: its key, credentials and
      checkpoint (default /var/lib/netfleet-agent).

Tool options (defaults suit a normal host):
  --ovs-db PATH        ovsdb socket (default /run/openvswitch/db.sock)
  --ovs-rundir DIR     OVS run dir holding <bridge>.mgmt sockets
  --libvirt-uri URI    libvirt connection (default qemu:///system)
  --run-dir DIR        the agent's own files: dnsmasq configs, pids, logs (default /run/netfleet)
  --state-dir DIR      what survives a reboot: dnsmasq leases (the fleet agent's state dir;
                       else <run-dir>/state when --run-dir is given, else /var/lib/netfleet-agent)

Exit codes: 0 converged (or nothing to change in check mode), 1 runtime error,
2 invalid assignment (nothing changed), 3 some resource failed.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      strict: true,
      options: {
        assignment: { type: "string" },
        check: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        "ovs-db": { type: "string" },
        "ovs-rundir": { type: "string" },
        "libvirt-uri": { type: "string" },
        "run-dir": { type: "string" },
        interval: { type: "string", default: "30" },
        "flow-interval": { type: "string", default: "2" },
        site: { type: "string" },
        nats: { type: "string" },
        token: { type: "string" },
        "token-file": { type: "string" },
        name: { type: "string" },
        "state-dir": { type: "string" },
        "confirm-deadline": { type: "string", default: "20" },
        heartbeat: { type: "string", default: "15" },
        "no-watch": { type: "boolean", default: false },
        "any-host": { type: "boolean", default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`netfleet-agent: ${(err as Error).message}\n`);
    return 64;
  }
  if (command !== "apply" && command !== "run") {
    process.stdout.write(HELP);
    return command === undefined || command === "help" || command === "--help" ? 0 : 64;
  }
  const file = parsed.values.assignment;
  if (command === "run" && !file && parsed.values.nats !== undefined) return runFleetAgent(parsed.values);
  if (!file) {
    process.stderr.write("netfleet-agent apply: --assignment FILE is required\n");
    return 64;
  }
  let assignment;
  try {
    assignment = decodeAssignment(file, readFileSync(file, "utf8"));
  } catch (err) {
    if (err instanceof DecodeError || (err as NodeJS.ErrnoException).code === "ENOENT") {
      process.stderr.write(`netfleet-agent: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
  const v = parsed.values;
  const refused = wrongHost(file, assignment.host, v.name, v["any-host"]);
  if (refused !== undefined) {
    process.stderr.write(`netfleet-agent: ${refused}\n`);
    return refused.startsWith("--name") ? 64 : 2;
  }
  const tools = toolbox(v);
  if (command === "run") {
    const hostCheck = (next: HostAssignment) => wrongHost(file, next.host, v.name, v["any-host"]);
    return runDaemon(file, assignment, tools, Number(v.interval) * 1000, Number(v["flow-interval"]) * 1000, hostCheck);
  }
  const started = performance.now();
  const results = await reconcile(assignment.resources, { runner: new ExecaRunner(), tools, owner: assignment.site, check: v.check });
  const summary = summarize(results);
  const wallMs = Math.round(performance.now() - started);
  if (v.json) {
    process.stdout.write(JSON.stringify({ host: assignment.host, hash: assignment.hash, check: v.check, summary, wallMs, results }, null, 2) + "\n");
  } else {
    for (const r of results) process.stdout.write(formatResult(r));
    process.stdout.write(`${assignment.host}: ${summary.ok} ok, ${summary.changed} changed, ${summary.pending} would change, ${summary.failed} failed (${wallMs} ms)\n`);
  }
  return summary.failed > 0 ? 3 : 0;
}

/**
 * File mode's host check: an assignment names its host, and only that host
 * applies it (applying a VM host's document on the backend would remove its
 * gateway ports, dnsmasq and nft table). `name` defaults to os.hostname();
 * `anyHost` (--any-host) lets a lab apply another host's document on purpose.
 * Returns the one-line refusal, or undefined when the document may apply.
 */
export function wrongHost(file: string, docHost: string, name: string | undefined, anyHost: boolean | undefined): string | undefined {
  if (anyHost) return undefined;
  if (name !== undefined && !DNS_LABEL.test(name)) return "--name must be a DNS label (this host's name in the inventory)";
  const me = name ?? hostname().split(".")[0]!;
  if (docHost === me) return undefined;
  return `${JSON.stringify(file)} is the assignment of host ${docHost}, and this host is ${me} (${name !== undefined ? "--name" : "its hostname"}); refused, nothing changed (--name ${docHost} if this is ${docHost}; --any-host applies another host's assignment on purpose)`;
}

function toolbox(v: { "ovs-db"?: string | undefined; "ovs-rundir"?: string | undefined; "libvirt-uri"?: string | undefined; "run-dir"?: string | undefined; "state-dir"?: string | undefined }): Toolbox {
  return new Toolbox({
    ...(v["ovs-db"] ? { ovsDb: v["ovs-db"] } : {}),
    ...(v["ovs-rundir"] ? { ovsRundir: v["ovs-rundir"] } : {}),
    ...(v["libvirt-uri"] ? { libvirtUri: v["libvirt-uri"] } : {}),
    ...(v["run-dir"] ? { runDir: v["run-dir"] } : {}),
    ...(v["state-dir"] ? { stateDir: v["state-dir"] } : {}),
  });
}

interface FleetValues {
  site?: string | undefined;
  nats?: string | undefined;
  token?: string | undefined;
  "token-file"?: string | undefined;
  name?: string | undefined;
  "state-dir"?: string | undefined;
  interval?: string | undefined;
  "flow-interval"?: string | undefined;
  "confirm-deadline"?: string | undefined;
  heartbeat?: string | undefined;
  "no-watch"?: boolean | undefined;
  "ovs-db"?: string | undefined;
  "ovs-rundir"?: string | undefined;
  "libvirt-uri"?: string | undefined;
  "run-dir"?: string | undefined;
}

/** `netfleet-agent run --site S --nats URLS --token T`: the fleet agent, until SIGTERM/SIGINT. */
async function runFleetAgent(v: FleetValues): Promise<number> {
  const usage = (msg: string) => {
    process.stderr.write(`netfleet-agent run: ${msg}\n`);
    return 64;
  };
  if (!v.site || !DNS_LABEL.test(v.site)) return usage("--site NAME is required (a DNS label)");
  const servers = (v.nats ?? "").split(",").map((u) => u.trim()).filter(Boolean);
  if (servers.length === 0 || servers.some((u) => !/^(?:nats|tls):\/\/[^\s/]+:\d{1,5}$/.test(u))) return usage("--nats takes nats://host:port[,nats://host:port...]");
  let token = v.token;
  if (v["token-file"] !== undefined) {
    if (token !== undefined) return usage("give --token or --token-file, not both");
    try {
      token = readFileSync(v["token-file"], "utf8").trim();
    } catch (err) {
      return usage(`--token-file: ${(err as Error).message}`);
    }
  }
  if (!token) return usage("--token (or --token-file) is required (netfleet token prints the site's join token)");
  let join;
  try {
    join = parseJoinToken(token);
  } catch (err) {
    return usage((err as Error).message);
  }
  if (v.name !== undefined && !DNS_LABEL.test(v.name)) return usage("--name must be a DNS label");
  const seconds = (name: string, value: string | undefined, min: number) => {
    const n = Number(value);
    if (!(n >= min)) throw new Error(`--${name} must be a number >= ${min} (seconds)`);
    return n * 1000;
  };
  let intervalMs, flowIntervalMs, confirmDeadlineMs, heartbeatMs;
  try {
    intervalMs = seconds("interval", v.interval, 1);
    flowIntervalMs = seconds("flow-interval", v["flow-interval"], 0.2);
    confirmDeadlineMs = seconds("confirm-deadline", v["confirm-deadline"], 1);
    heartbeatMs = seconds("heartbeat", v.heartbeat, 0.2);
  } catch (err) {
    return usage((err as Error).message);
  }
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
  const stateDir = v["state-dir"] ?? "/var/lib/netfleet-agent";
  if ((await new AgentState(stateDir).checkpoint().catch(() => ({ current: undefined }))).current === undefined) readiness.ready("no checkpoint");
  const agent = new NatsAgent({
    site: v.site,
    servers,
    enrollment: { password: join.enrollPassword, token: join.token },
    ...(v.name ? { name: v.name } : {}),
    stateDir,
    runner: new ExecaRunner(),
    tools: toolbox({ ...v, "state-dir": stateDir }),
    intervalMs,
    flowIntervalMs,
    confirmDeadlineMs,
    heartbeatMs,
    watchEvents: !v["no-watch"],
    log,
  });
  const stop = new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  log({ event: "start", site: v.site, name: v.name, servers, pid: process.pid });
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

function formatResult(r: ResourceResult): string {
  const mark = r.result === false ? "FAILED " : r.result === null ? "CHANGE?" : r.changed ? "changed" : "ok     ";
  let text = `${mark} ${r.id}${r.comment && r.result !== true ? `: ${r.comment}` : ""}\n`;
  for (const [k, c] of Object.entries(r.changes)) text += `          ${k}: ${JSON.stringify(c.old)} -> ${JSON.stringify(c.new)}\n`;
  if (r.error) text += `          error: ${r.error}\n`;
  return text;
}

async function runDaemon(
  file: string,
  assignment: HostAssignment,
  tools: Toolbox,
  intervalMs: number,
  flowIntervalMs: number,
  hostCheck: (next: HostAssignment) => string | undefined,
): Promise<number> {
  if (!(intervalMs >= 1000) || !(flowIntervalMs >= 200)) {
    process.stderr.write("netfleet-agent run: --interval must be >= 1 and --flow-interval >= 0.2 (seconds)\n");
    return 64;
  }
  const log = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), ...event }) + "\n");
  const daemon = new AgentDaemon(assignment, { runner: new ExecaRunner(), tools, intervalMs, flowIntervalMs, watchEvents: true, log });
  log({ event: "start", host: assignment.host, hash: assignment.hash, pid: process.pid });
  await daemon.start();
  watchFile(file, { interval: 1000 }, () => {
    try {
      const next = decodeAssignment(file, readFileSync(file, "utf8"));
      const refused = hostCheck(next);
      if (refused !== undefined) {
        log({ event: "assignment-rejected", error: refused });
        return;
      }
      if (next.hash !== assignment.hash) {
        assignment = next;
        log({ event: "assignment", hash: next.hash });
        void daemon.replace(next);
      }
    } catch (err) {
      // A bad document changes nothing: the host keeps its current state.
      log({ event: "assignment-rejected", error: (err as Error).message });
    }
  });
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  unwatchFile(file);
  await daemon.stop();
  log({ event: "stop", host: assignment.host });
  return 0;
}
