import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentClient, type AgentClientOptions, type ApplyOutcome } from "@netfleet/agent";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser } from "@netfleet/controller";
import { generateSigningKeys, sealAssignment, type HostAssignment, type Host, type SigningKeys } from "@netfleet/shared";

export const SITE = "lab";
export const TOKEN = "site-enrollment-token-0123456789";

export function inventoryHost(name: string, mac?: string): Host {
  return {
    name,
    role: "vmhost",
    ...(mac ? { mac } : {}),
    groups: [],
    labels: {},
    networks: [],
    uplink: { mode: "kernel", bond: "bond0", members: ["eth0"], bond_mode: "active-backup", miimon: 100, mtu: 1500, datapath: "system", trunk_bridge: "br-uplink" },
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
  events: Record<string, unknown>[];
  close(): Promise<void>;
}

/** nats-server (1 or 3 nodes) on its own ports and temp dir, and a serving ControlPlane. */
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
      credentialsDir: join(dir, "credentials"),
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
    events,
    async close() {
      await cp.close().catch(() => {});
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestAgent {
  client: AgentClient;
  applied: { revision: number; hash: string }[];
  rollbacks: (string | undefined)[];
  events: Record<string, unknown>[];
  started: Promise<void>;
}

const OK: ApplyOutcome = { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true, comment: "changed" }] };

/** An agent whose apply and rollback only record what they were asked to do. */
export function startAgent(site: Site, options: { hostname: string; macs?: string[]; token?: string } & Partial<AgentClientOptions>): TestAgent {
  const applied: TestAgent["applied"] = [];
  const rollbacks: TestAgent["rollbacks"] = [];
  const events: Record<string, unknown>[] = [];
  const { hostname, macs = [], token = TOKEN, ...rest } = options;
  const client = new AgentClient({
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
export async function eventually(condition: () => boolean | Promise<boolean>, message: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
