import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { simFacts } from "./sim-facts.ts";
import { readJsonLines } from "../json-lines.ts";
import { FleetMember, NatsAgent, Toolbox, type FleetMemberOptions, type NatsAgentOptions, type PassResult } from "@netfleet/agent";
import { SimulatedHostRunner } from "@netfleet/agent/testing";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey, publishStoredWord } from "@netfleet/controller";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import {
  AgentCredentials,
  Welcome,
  appliedBucket,
  decodeMessage,
  encodeMessage,
  enrollSubject,
  generateBoxKeys,
  generateSigningKeys,
  kvSubject,
  openSealed,
  sealAssignment,
  welcomeContext,
  welcomeSubject,
  type BoxKeys,
  type EnrollFacts,
  type HostAssignment,
  type Host,
  type SigningKeys,
} from "@netfleet/shared";

export const SITE = "lab";
/** The site's join token: it only ever asks for a pending claim (quarantined); agents are approved with host tokens (Site.hostToken). */
export const TOKEN = "site-enrollment-token-0123456789";

export function inventoryHost(name: string, mac?: string): Host {
  return {
    name,
    role: "vmhost",
    ...(mac ? { mac } : {}),
    groups: [],
    labels: {},
    networks: [],
    uplink: { mode: "kernel", bond: "bond0", members: ["eth0"], bond_mode: "active-backup", miimon: 100, mtu: 1500, datapath: "system", trunk_bridge: "br-uplink", carries_management: false },
  };
}

/** A small valid assignment; `n` makes each one different. */
export function assignmentFor(host: string, n: number, site = SITE): HostAssignment {
  return sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site,
    host,
    role: "vmhost",
    resources: [{ kind: "sysctl", name: "net.ipv4.conf.all.arp_ignore", value: String(n) }],
  });
}

export interface Site {
  dir: string;
  server: NatsServer;
  cp: ControlPlane;
  signing: SigningKeys;
  enrollPassword: string;
  controllerPassword: string;
  events: Record<string, unknown>[];
  /** The controller's credentials dir (agent passwords, the host-token key). */
  credentialsDir: string;
  /** A fresh host token for `host` (single use, `ttlMs` default 24 h), minted with this controller's key: it enrolls that host at once. */
  hostToken(host: string, ttlMs?: number): string;
  close(): Promise<void>;
}

/**
 * nats-server (1 or 3 nodes) on its own ports and temp dir, and a serving ControlPlane.
 * `basePort`: clients basePort+i, routes +100+i, monitoring +200+i (NatsServer). Keep all of
 * them below 32768: Linux hands out 32768-60999 as ephemeral source ports
 * (net.ipv4.ip_local_port_range), so a fixed port there can be taken by any
 * client connection of an earlier test (CI saw "address in use" that way).
 */
export async function startSite(options: { basePort: number; nodes?: 1 | 3; hosts: Host[] }): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), "nf-nats-"));
  const password = randomBytes(18).toString("base64url");
  const enrollPassword = randomBytes(18).toString("base64url");
  const nodes = options.nodes ?? 1;
  const server = await NatsServer.start({
    dir: join(dir, "nats"),
    nodes,
    basePort: options.basePort,
    users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)],
  });
  const signing = generateSigningKeys();
  const events: Record<string, unknown>[] = [];
  const credentialsDir = join(dir, "credentials");
  const mintKey = await hostTokenKey(credentialsDir);
  let cp: ControlPlane;
  try {
    cp = await ControlPlane.connect({
      site: SITE,
      servers: server.urls,
      user: "controller",
      password,
      hosts: options.hosts,
      enrollmentToken: TOKEN,
      enrollmentPassword: enrollPassword,
      signing,
      credentialsDir,
      userDirectory: server,
      replicas: nodes,
      log: (e) => events.push(e),
    });
    await cp.serve();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    dir,
    server,
    cp,
    signing,
    enrollPassword,
    controllerPassword: password,
    events,
    credentialsDir,
    hostToken: (host, ttlMs) => mintHostTokenWithKey(mintKey, { site: SITE, enrollPassword, host, ...(ttlMs !== undefined ? { ttlMs } : {}) }).token,
    async close() {
      await cp.close().catch(() => {});
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestAgent {
  client: FleetMember;
  applied: { revision: number; hash: string }[];
  rollbacks: (string | undefined)[];
  events: Record<string, unknown>[];
  started: Promise<void>;
}

const OK: PassResult = { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true, comment: "changed" }] };

/**
 * An agent whose apply and rollback only record what they were asked to do.
 * It enrolls with `token`, by default a host token minted for `hostname`
 * (approved at once); pass TOKEN (the site token) for a pending claim.
 */
export function startAgent(site: Site, options: { hostname: string; macs?: string[]; token?: string } & Partial<FleetMemberOptions>): TestAgent {
  const applied: TestAgent["applied"] = [];
  const rollbacks: TestAgent["rollbacks"] = [];
  const events: Record<string, unknown>[] = [];
  const { hostname, macs = [], token = site.hostToken(hostname), ...rest } = options;
  const client = new FleetMember({
    site: SITE,
    hostname,
    servers: site.server.urls,
    runDir: join(site.dir, "agents", hostname),
    enrollment: { user: `enroll-${SITE}`, password: site.enrollPassword, token },
    agentVersion: "0.1.0-test",
    enrollRetryMs: 300,
    reconnectTimeWaitMs: 200,
    onAssignment: async (a, revision) => {
      applied.push({ revision, hash: a.hash });
      return OK;
    },
    rollback: async (previous) => {
      rollbacks.push(previous?.hash);
      return OK;
    },
    gatherFacts: async () => ({
      interfaces: macs.map((mac, i) => ({ name: `eth${i}`, mac, state: "UP", kind: null })),
      kernel: { "8021q": { loaded: true, available: true }, bonding: { loaded: false, available: true }, openvswitch: { loaded: true, available: true } },
      ovsVersion: "3.1.0",
      libvirtVersion: "9.0.0",
    }),
    log: (e) => events.push(e),
    ...rest,
  });
  return { client, applied, rollbacks, events, started: client.start() };
}

/** Polls until the condition holds; fails with the message after `timeoutMs`. */
/** Stops what a test started: its agents, then its site (the afterEach of the NATS suites). */
export async function stopAll(site: Site | undefined, agents: TestAgent[]): Promise<void> {
  for (const a of agents.splice(0)) await a.client.stop();
  await site?.close();
}

export async function eventually(condition: () => boolean | Promise<boolean>, message: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Facts of a simulated host with every kernel feature. */
export { simFacts };

export interface SimAgent {
  agent: NatsAgent;
  host: SimulatedHostRunner;
  events: Record<string, unknown>[];
  started: Promise<void>;
}

/** The real agent runtime (engine, daemon, drift repair) in this process, on a simulated sysctl-only host; enrolled with a host token. */
export function startSimAgent(site: Site, options: { hostname: string; host?: SimulatedHostRunner } & Partial<NatsAgentOptions>): SimAgent {
  const events: Record<string, unknown>[] = [];
  const { hostname, host = new SimulatedHostRunner(), ...rest } = options;
  const agent = new NatsAgent({
    site: SITE,
    servers: site.server.urls,
    enrollment: { password: site.enrollPassword, token: site.hostToken(hostname) },
    name: hostname,
    stateDir: join(site.dir, "agents", hostname),
    runner: host,
    tools: new Toolbox(),
    intervalMs: 60_000,
    flowIntervalMs: 60_000,
    watchEvents: false,
    heartbeatMs: 500,
    enrollRetryMs: 300,
    reconnectTimeWaitMs: 200,
    gatherFacts: simFacts,
    log: (e) => events.push(e),
    ...rest,
  });
  return { agent, host, events, started: agent.start() };
}

export interface AgentProcess {
  child: ChildProcess;
  events: Record<string, unknown>[];
  exited: Promise<number | null>;
}

const REPO = new URL("../..", import.meta.url).pathname;

/** test/nats/sim-agent.ts as a child process (so a test can SIGKILL it); its host state is a file under the site dir; enrolled with a host token. */
export function spawnSimAgent(site: Site, options: { hostname: string; delayMs?: number; intervalMs?: number; confirmDeadlineMs?: number }): AgentProcess {
  const arg = {
    site: SITE,
    servers: site.server.urls,
    enrollPassword: site.enrollPassword,
    token: site.hostToken(options.hostname),
    name: options.hostname,
    stateDir: join(site.dir, "agents", options.hostname),
    hostFile: join(site.dir, `host-${options.hostname}.json`),
    ...options,
  };
  const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(REPO, "test/nats/sim-agent.ts"), JSON.stringify(arg)], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
  const events: Record<string, unknown>[] = [];
  readJsonLines(child.stdout!, (parsed, line) => events.push(parsed === undefined ? { event: "stdout", line } : (parsed as Record<string, unknown>)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, events, exited };
}

/** SIGKILL (or SIGTERM) a child and wait for it; bounded. */
export async function killProcess(p: AgentProcess, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 5000);
  await p.exited;
  clearTimeout(timer);
}

/** A controller state dir for the CLI commands (netfleet rollout/status/hosts --state-dir) that matches this site. */
export async function writeControllerHome(site: Site, inventoryDir: string): Promise<string> {
  const dir = join(site.dir, "controller");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const secrets = { site: SITE, controller: { user: "controller", password: site.controllerPassword }, enrollment: { enrollPassword: site.enrollPassword, token: TOKEN }, signing: site.signing };
  await writeFile(join(dir, "secrets.json"), JSON.stringify(secrets), { mode: 0o600 });
  await writeFile(join(dir, "controller.json"), JSON.stringify({ site: SITE, inventory: inventoryDir, nats: site.server.urls, replicas: site.server.nodes.length }));
  return dir;
}

/** Facts of an enroll message as a hand-made client sends them (a few interfaces, this key, this token). */
export function rawFacts(o: { hostname: string; token: string; publicKey: string; macs?: string[]; site?: string }): EnrollFacts {
  return {
    kind: "enroll",
    site: o.site ?? SITE,
    hostname: o.hostname,
    token: o.token,
    agentVersion: "0.1.0-raw",
    interfaces: (o.macs ?? []).map((mac, i) => ({ name: `eth${i}`, mac, state: "UP", kind: null })),
    kernel: { "8021q": { loaded: true, available: true }, bonding: { loaded: false, available: true }, openvswitch: { loaded: true, available: true } },
    ovsVersion: "3.1.0",
    libvirtVersion: "9.0.0",
    publicKey: o.publicKey,
    sentAt: new Date().toISOString(),
  };
}

/**
 * Enrolls by hand, as an agent would (the shared enrollment user, facts on
 * `nf.<site>.enroll.<hostname>`, a welcome sealed to `keys` on
 * `nf.<site>.welcome.<hostname>`): the credentials the welcome holds, or
 * undefined when none came within `timeoutMs`. Facts are sent again every 500 ms.
 */
export async function enrollRaw(site: Site, o: { hostname: string; token: string; keys?: BoxKeys; macs?: string[]; timeoutMs?: number }): Promise<{ keys: BoxKeys; credentials: AgentCredentials | undefined }> {
  const keys = o.keys ?? generateBoxKeys();
  const nc = await connect({ servers: site.server.urls, user: `enroll-${SITE}`, pass: site.enrollPassword });
  try {
    const sub = nc.subscribe(welcomeSubject(SITE, o.hostname));
    const deadline = Date.now() + (o.timeoutMs ?? 5000);
    const welcome = (async () => {
      for await (const msg of sub) {
        try {
          const box = decodeMessage(Welcome, msg.subject, msg.data);
          return decodeMessage(AgentCredentials, "welcome", openSealed(keys, box, welcomeContext(SITE, o.hostname)));
        } catch {
          // sealed to another key: not ours
        }
      }
      return undefined;
    })();
    let got: AgentCredentials | undefined;
    void welcome.then((c) => (got = c));
    while (!got && Date.now() < deadline) {
      nc.publish(enrollSubject(SITE, o.hostname), encodeMessage(rawFacts({ hostname: o.hostname, token: o.token, publicKey: keys.publicKey, ...(o.macs ? { macs: o.macs } : {}) })));
      await nc.flush();
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
    }
    sub.unsubscribe();
    return { keys, credentials: got ?? (await Promise.race([welcome, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))])) };
  } finally {
    await nc.close();
  }
}

/**
 * A NATS connection with `host`'s own agent credentials, enrolled by hand with a host token (approved at
 * once): what an impostor holding the host's agent.json, or a host cut off after its KV put, looks like to
 * the controller. The caller closes it. `options` are passed to nats.js's connect (e.g. a short
 * `reconnectTimeWait` for a test that restarts the server; nats.js's default is 2 s plus jitter).
 * @throws Error when the enrollment got no welcome.
 */
export async function connectAsAgent(site: Site, host: string, options: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  const { credentials } = await enrollRaw(site, { hostname: host, token: site.hostToken(host), timeoutMs: 10_000 });
  if (!credentials) throw new Error(`${host}: no welcome`);
  return connect({ ...options, servers: site.server.urls, user: credentials.user, pass: credentials.password, inboxPrefix: credentials.inboxPrefix });
}

/** A raw connection and the server's asynchronous errors on it (permission violations), collected as they come. */
export interface RecordingConnection {
  nc: NatsConnection;
  errors: string[];
}

/**
 * A raw connection to the site's servers as `user` (with `inboxPrefix` when the user may only hear its own
 * inbox), recording the server's asynchronous errors. The caller closes `nc`.
 * @throws Error when the server refuses the connection.
 */
export async function recordingConnection(site: Site, user: string, pass: string, inboxPrefix?: string): Promise<RecordingConnection> {
  const nc = await connect({ servers: site.server.urls, user, pass, ...(inboxPrefix ? { inboxPrefix } : {}) });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: Error }).error?.message));
  })();
  return { nc, errors };
}

/**
 * A recordingConnection with the credentials `host`'s running agent (startAgent) keeps in its credentials.json:
 * what a stolen agent.json gives. The caller closes `nc`.
 * @throws Error when the file is missing or does not decode, or the server refuses the connection.
 */
export async function agentFileConnection(site: Site, host: string): Promise<RecordingConnection> {
  const creds = decodeMessage(AgentCredentials, "creds", await readFile(join(site.dir, "agents", host, "credentials.json"), "utf8"));
  return recordingConnection(site, creds.user, creds.password, creds.inboxPrefix);
}

/**
 * Stores `data` in `host`'s key of the site's applied bucket as an agent's confirmation attempt does (a
 * JetStream publish on the key's subject, acknowledged).
 * @throws Error when the stream refuses it.
 */
export async function storeApplied(nc: NatsConnection, host: string, data: Uint8Array): Promise<void> {
  const ack = await nc.request(kvSubject(appliedBucket(SITE), host), data, { timeout: 5000 });
  if (!(ack.json() as { seq?: number }).seq) throw new Error(`${host}: store refused: ${ack.string()}`);
}

/**
 * Sends the controller's word that the desired bucket of SITE stored `bytes` for `host` at stream sequence `seq`
 * (revision `revision`), with the controller's own publishStoredWord: on `nc`, which must be allowed to publish there
 * (the controller's connection).
 */
export function sendStoredWord(nc: NatsConnection, host: string, bytes: Uint8Array, seq: number, revision: number): void {
  publishStoredWord(nc, SITE, host, bytes, seq, revision);
}
