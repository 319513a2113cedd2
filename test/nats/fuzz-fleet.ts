/**
 * The fleet the NATS fuzz suite attacks: the `netfleet serve` CLI (which
 * starts and owns its nats-server) on its own loopback port and state dir,
 * agents as child processes (sim-agent.ts: the real agent runtime on a
 * simulated sysctl host) and, where a process would only cost start-up
 * time, FleetMembers in the test's process. Each child's stdout is kept as
 * JSON events, its stderr as text; every child is stopped by pid.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FleetMember, type PassResult } from "@netfleet/agent";
import { ControlPlane, hostTokenKey, mintHostTokenWithKey } from "@netfleet/controller";
import { loadInventory, type SigningKeys } from "@netfleet/shared";
import { simFacts } from "./sim-facts.ts";
import { readJsonLines } from "../json-lines.ts";

const REPO = new URL("../..", import.meta.url).pathname;

/** Log events of an agent or of serve, as they arrive; `waitFor` resolves on the first that matches. */
export class EventLog {
  readonly events: Record<string, unknown>[] = [];
  private readonly waiters = new Set<(e: Record<string, unknown>) => void>();

  push(e: Record<string, unknown>): void {
    this.events.push(e);
    for (const w of [...this.waiters]) w(e);
  }

  /** Resolves with the first event (already logged or to come) that `match` accepts; rejects after `timeoutMs` with `message`. */
  waitFor(match: (e: Record<string, unknown>) => boolean, message: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const seen = this.events.find(match);
      if (seen) return resolve(seen);
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out: ${message}`));
      }, timeoutMs);
      const check = (e: Record<string, unknown>) => {
        if (!match(e)) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(e);
      };
      this.waiters.add(check);
    });
  }
}

/** A child process we started, with what it printed. */
export interface Child {
  name: string;
  child: ChildProcess;
  pid: number;
  /** stdout lines that parsed as JSON objects (the product's log events). */
  events: Record<string, unknown>[];
  log: EventLog;
  /** stdout lines that did not parse, and all of stderr. */
  noise: string[];
  exited: Promise<number | null>;
}

/** Starts `node <script> ...args` through scripts/node.sh (argv, no shell line), collecting its output. */
export function spawnChild(name: string, args: string[]): Child {
  const child = spawn("sh", [join(REPO, "scripts/node.sh"), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  const log = new EventLog();
  const noise: string[] = [];
  readJsonLines(child.stdout!, (parsed, line) => {
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) log.push(parsed as Record<string, unknown>);
    else noise.push(line);
  });
  child.stderr!.on("data", (chunk: Buffer) => noise.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { name, child, pid: child.pid!, events: log.events, log, noise, exited };
}

/** True while the process exists (signal 0 probes without signalling). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after 5 s; waits for the exit (bounded). */
export async function stopChild(c: Child | undefined): Promise<void> {
  if (!c || c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill("SIGTERM");
  const timer = setTimeout(() => c.child.kill("SIGKILL"), 5000);
  await c.exited;
  clearTimeout(timer);
}

/** Waits (bounded, polling every 50 ms) until `condition` holds; throws `message` (or what it returns) after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, message: string | (() => string), timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${typeof message === "string" ? message : message()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What `netfleet serve` keeps in its state dir's secrets.json (controller-home.ts). */
export interface ServeSecrets {
  site: string;
  controller: { user: string; password: string };
  enrollment: { enrollPassword: string; token: string };
  signing: SigningKeys;
}

export const SITE = "lab";
/** Hosts of the fuzz inventory: gw1 the backend, hv1..hv3 VM hosts. */
export const HOSTS = ["gw1", "hv1", "hv2", "hv3"] as const;

/** A small valid inventory (site `lab`, one network) whose site.nats is `url`. */
export async function writeInventory(dir: string, url: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "site.yaml"), `site:\n  name: ${SITE}\n  domain: lab.test\n  nats: [${url}]\n  management: 10.99.0.0/24\n`);
  await writeFile(
    join(dir, "hosts.yaml"),
    [
      "groups:",
      "  all:",
      "    uplink: { mode: kernel, bond: bond0, members: [eth0], bond_mode: active-backup }",
      "hosts:",
      "  gw1: { groups: [all], role: backend, address: 10.99.0.3, external_interface: wan0 }",
      "  hv1: { groups: [all], role: vmhost, address: 10.99.0.1, networks: [service] }",
      "  hv2: { groups: [all], role: vmhost, address: 10.99.0.2, networks: [service] }",
      "  hv3: { groups: [all], role: vmhost, address: 10.99.0.4, networks: [service] }",
      "",
    ].join("\n"),
  );
  await writeFile(
    join(dir, "networks.yaml"),
    "networks:\n  service:\n    vlan: 1082\n    egress: open\n    cidr: 10.82.0.0/24\n    gateway: 10.82.0.1\n    dhcp: { start: 10.82.0.100, end: 10.82.0.199, lease_time: 1h }\n",
  );
}

export interface Serve {
  proc: Child;
  url: string;
  stateDir: string;
  inventoryDir: string;
  secrets: ServeSecrets;
  /** The nats-server serve started (its pid file in the state dir). */
  natsPid: number;
  /** The host-token key in serve's credentials dir: agents enroll with host tokens minted with it (hostToken). */
  mintKey: Buffer;
}

/** A fresh host token for `host`, minted like `netfleet hosts token` does: the agent is approved at once. */
export function hostToken(serve: Serve, host: string): string {
  return mintHostTokenWithKey(serve.mintKey, { site: SITE, enrollPassword: serve.secrets.enrollment.enrollPassword, host }).token;
}

/** `netfleet serve <inventory> --listen 127.0.0.1:<port> --state-dir <dir>`; resolves on its ready line. */
export async function startServe(dir: string, port: number): Promise<Serve> {
  const url = `nats://127.0.0.1:${port}`;
  const inventoryDir = join(dir, "inventory");
  const stateDir = join(dir, "controller");
  await writeInventory(inventoryDir, url);
  const proc = spawnChild("serve", [join(REPO, "packages/controller/src/cli.ts"), "serve", inventoryDir, "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir]);
  try {
    await until(() => {
      if (proc.child.exitCode !== null) throw new Error(`netfleet serve exited ${proc.child.exitCode}: ${proc.noise.join("").slice(-2000)}`);
      return proc.events.some((e) => e.event === "ready");
    }, "netfleet serve prints its ready line", 40_000);
    const secrets = JSON.parse(await readFile(join(stateDir, "secrets.json"), "utf8")) as ServeSecrets;
    const natsPid = Number((await readFile(join(stateDir, "nats", "nf-1", "nats.pid"), "utf8")).trim());
    const mintKey = await hostTokenKey(join(stateDir, "credentials"));
    return { proc, url, stateDir, inventoryDir, secrets, natsPid, mintKey };
  } catch (err) {
    await stopChild(proc);
    throw err;
  }
}

/** A controller connection with serve's own credentials and signing key (what `netfleet rollout` opens), no subscriptions. */
export async function controllerOf(serve: Serve): Promise<ControlPlane> {
  const inventory = await loadInventory(serve.inventoryDir);
  return ControlPlane.connect({
    site: SITE,
    servers: [serve.url],
    user: serve.secrets.controller.user,
    password: serve.secrets.controller.password,
    hosts: inventory.hosts,
    enrollmentToken: serve.secrets.enrollment.token,
    enrollmentPassword: serve.secrets.enrollment.enrollPassword,
    signing: serve.secrets.signing,
    credentialsDir: join(serve.stateDir, "credentials"),
  });
}

/**
 * An agent of the fuzz fleet: its own process (`child`, the real runtime
 * on a simulated host) or a FleetMember in the test's process (`client`,
 * the real control-plane client with a recording apply: what it applied is
 * written to `hostFile`). Both log events the same way.
 */
export interface FleetAgent {
  name: string;
  events: Record<string, unknown>[];
  log: EventLog;
  noise: string[];
  stateDir: string;
  runDir: string;
  hostFile: string;
  child?: Child;
  client?: FleetMember;
  /** The process lives (a child), or the client has not been stopped (in process). */
  running(): boolean;
  stop(): Promise<void>;
}

/** An agent process (sim-agent.ts) named `name`, enrolling with `token` (default: a host token minted for it). */
export function startAgentProcess(dir: string, serve: Serve, name: string, token = hostToken(serve, name)): FleetAgent {
  const stateDir = join(dir, "agents", name);
  const runDir = join(dir, "run", name);
  const hostFile = join(dir, `host-${name}.json`);
  // Timers long enough that the storm, not a periodic pass or resync, is what the agent sees.
  const timers = { intervalMs: 600_000, flowIntervalMs: 600_000, heartbeatMs: 1000, resyncMs: 600_000 };
  const arg = { site: SITE, servers: [serve.url], enrollPassword: serve.secrets.enrollment.enrollPassword, token, name, stateDir, runDir, hostFile, ...timers };
  const child = spawnChild(name, [join(REPO, "test/nats/sim-agent.ts"), JSON.stringify(arg)]);
  return {
    name,
    events: child.events,
    log: child.log,
    noise: child.noise,
    stateDir,
    runDir,
    hostFile,
    child,
    running: () => alive(child.pid) && child.child.exitCode === null && child.child.signalCode === null,
    stop: () => stopChild(child),
  };
}

const OK: PassResult = { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true, comment: "changed" }] };

/** A FleetMember in this process (cheaper than a process: the suite's hosts that are only enrolled or waiting). */
export function startAgentInProcess(dir: string, serve: Serve, name: string, token = hostToken(serve, name)): FleetAgent {
  const stateDir = join(dir, "agents", name);
  const hostFile = join(dir, `host-${name}.json`);
  const log = new EventLog();
  const applied: { revision: number; hash: string }[] = [];
  let stopped = false;
  const client = new FleetMember({
    site: SITE,
    hostname: name,
    servers: [serve.url],
    runDir: stateDir,
    enrollment: { user: `enroll-${SITE}`, password: serve.secrets.enrollment.enrollPassword, token },
    agentVersion: "0.1.0-fuzz",
    enrollRetryMs: 300,
    reconnectTimeWaitMs: 200,
    heartbeatMs: 1000,
    onAssignment: async (a, revision) => {
      applied.push({ revision, hash: a.hash });
      await writeFile(hostFile, JSON.stringify(applied));
      return OK;
    },
    rollback: async () => OK,
    gatherFacts: simFacts,
    log: (e) => log.push({ ts: Date.now(), ...e }),
  });
  void client.start().then(() => log.push({ ts: Date.now(), event: "ready", host: client.host }));
  return {
    name,
    events: log.events,
    log,
    noise: [],
    stateDir,
    runDir: join(dir, "run", name),
    hostFile,
    client,
    running: () => !stopped,
    stop: async () => {
      stopped = true;
      await client.stop();
    },
  };
}

/** The events of a child named `event`. */
export function eventsOf(c: { events: Record<string, unknown>[] }, event: string): Record<string, unknown>[] {
  return c.events.filter((e) => e.event === event);
}
