import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import PQueue from "p-queue";
import writeFileAtomic from "write-file-atomic";
import { renderAccounts, renderNodeConfig, type NatsNodeConfig, type NatsUser } from "./config.ts";

/** Where and how `NatsServer.start` runs its nodes. */
export interface NatsServerOptions {
  /** Everything of ours lives here: one folder per node (config, store, log, pid) and accounts.conf. */
  dir: string;
  /** 1 for a single server, 3 for a JetStream cluster. */
  nodes: 1 | 3;
  /** Client and route listen address; monitoring always listens on 127.0.0.1. */
  host?: string;
  /** Node i listens for clients on basePort+i, routes on basePort+100+i, monitoring on basePort+200+i. */
  basePort: number;
  users: NatsUser[];
  binary?: string;
  readyTimeoutMs?: number;
}

/** One running (or stopped) node: its config, files, URLs and child process. */
export interface NatsNode {
  name: string;
  url: string;
  monitorUrl: string;
  config: NatsNodeConfig;
  configFile: string;
  logFile: string;
  process: ChildProcess | undefined;
  exited: Promise<void>;
}

/** The server failed to start or to become healthy in time; the last lines of its log say why. */
export class NatsServerError extends Error {
  readonly node: string;
  readonly log: string;
  constructor(node: string, message: string, log: string) {
    super(`nats-server ${node}: ${message}${log ? `\n${log}` : ""}`);
    this.name = "NatsServerError";
    this.node = node;
    this.log = log;
  }
}

/**
 * nats-server processes we own: started from configs we write (argv spawn,
 * no shell), ready when /healthz reports JetStream, stopped and reaped.
 * Users live in one accounts file shared by every node; `setUsers` rewrites
 * it and reloads every running node.
 */
export class NatsServer {
  readonly nodes: NatsNode[];
  private readonly options: Required<Omit<NatsServerOptions, "users">>;
  private readonly accountsPath: string;
  private users: NatsUser[];
  /** User changes, one at a time: the accounts file is written and each reload awaited before the next. */
  private readonly userChanges = new PQueue({ concurrency: 1 });

  private constructor(options: NatsServerOptions) {
    this.options = {
      dir: options.dir,
      nodes: options.nodes,
      host: options.host ?? "127.0.0.1",
      basePort: options.basePort,
      binary: options.binary ?? "nats-server",
      readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
    };
    this.users = options.users;
    this.accountsPath = join(options.dir, "accounts.conf");
    const { host, basePort } = this.options;
    const routeUser = "route";
    const routePassword = randomBytes(18).toString("base64url");
    const names = Array.from({ length: options.nodes }, (_, i) => `nf-${i + 1}`);
    this.nodes = names.map((name, i) => {
      const nodeDir = join(options.dir, name);
      const config: NatsNodeConfig = {
        name,
        host,
        port: basePort + i,
        monitorPort: basePort + 200 + i,
        storeDir: join(nodeDir, "jetstream"),
        pidFile: join(nodeDir, "nats.pid"),
        accountsFile: "../accounts.conf",
        ...(options.nodes > 1
          ? {
              cluster: {
                name: "netfleet",
                host,
                port: basePort + 100 + i,
                user: routeUser,
                password: routePassword,
                routes: names.flatMap((_, j) => (j === i ? [] : [`nats-route://${routeUser}:${routePassword}@${host}:${basePort + 100 + j}`])),
              },
            }
          : {}),
      };
      return {
        name,
        url: `nats://${host}:${basePort + i}`,
        monitorUrl: `http://127.0.0.1:${basePort + 200 + i}`,
        config,
        configFile: join(nodeDir, "nats.conf"),
        logFile: join(nodeDir, "nats.log"),
        process: undefined,
        exited: Promise.resolve(),
      };
    });
  }

  /**
   * Writes the configs and starts every node (for 3, until a meta leader is elected).
   * @throws NatsServerError when a node does not start or no leader is elected in time (every node is stopped then).
   */
  static async start(options: NatsServerOptions): Promise<NatsServer> {
    const server = new NatsServer(options);
    await server.writeAccounts();
    for (const node of server.nodes) {
      await mkdir(node.config.storeDir, { recursive: true, mode: 0o700 });
      await writeFile(node.configFile, renderNodeConfig(node.config), { mode: 0o600 });
    }
    try {
      await Promise.all(server.nodes.map((n) => server.launch(n)));
      if (server.nodes.length > 1) await server.waitForMetaLeader();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** The client URL of each node (`nats://host:port`). */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /**
   * The node of that server name.
   * @throws Error when there is none.
   */
  node(name: string): NatsNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no nats-server node ${name}`);
    return node;
  }

  /** Replaces the user list and reloads every running node; resolves once each has loaded it. */
  setUsers(users: NatsUser[]): Promise<void> {
    return this.userChanges.add(async () => {
      this.users = users;
      await this.writeAccounts();
      await Promise.all(this.nodes.filter((n) => n.process).map((n) => this.reload(n)));
    });
  }

  /** SIGKILL: the node dies as in a crash; its store stays for `restart`. */
  async kill(name: string): Promise<void> {
    const node = this.node(name);
    node.process?.kill("SIGKILL");
    await node.exited;
  }

  /** Starts the node again (killing it first if it runs), on the same store. */
  async restart(name: string): Promise<void> {
    const node = this.node(name);
    if (node.process) await this.kill(name);
    await this.launch(node);
  }

  /** The server name of the JetStream meta leader, as a running node sees it. */
  async metaLeader(): Promise<string | undefined> {
    for (const node of this.nodes.filter((n) => n.process)) {
      const jsz = (await getJson(`${node.monitorUrl}/jsz`)) as { meta_cluster?: { leader?: string } } | undefined;
      if (jsz?.meta_cluster?.leader) return jsz.meta_cluster.leader;
    }
    return undefined;
  }

  /**
   * Waits for a JetStream meta leader other than `except`; returns its server name.
   * @throws NatsServerError after `readyTimeoutMs`.
   */
  async waitForMetaLeader(except?: string): Promise<string> {
    const leader = await poll(async () => {
      const name = await this.metaLeader();
      return name && name !== except ? name : undefined;
    }, 100, this.options.readyTimeoutMs);
    if (leader === undefined) throw new NatsServerError("cluster", "no JetStream meta leader elected in time", "");
    return leader;
  }

  /** SIGTERM, then SIGKILL after 5 s; every process is reaped. */
  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        const child = node.process;
        if (!child) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await node.exited;
        clearTimeout(timer);
      }),
    );
  }

  private async writeAccounts(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.accountsPath, renderAccounts(this.users), { mode: 0o600 });
  }

  private async launch(node: NatsNode): Promise<void> {
    const fd = openSync(node.logFile, "a", 0o600);
    const child = spawn(this.options.binary, ["-c", node.configFile], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    node.process = child;
    node.exited = new Promise((resolve) => {
      child.once("exit", () => {
        if (node.process === child) node.process = undefined;
        resolve();
      });
      child.once("error", () => {
        if (node.process === child) node.process = undefined;
        resolve();
      });
    });
    const healthy = await poll(async () => {
      if (!node.process) throw new NatsServerError(node.name, "exited during start", await tail(node.logFile));
      return (await fetchStatus(`${node.monitorUrl}/healthz?js-enabled-only=true`)) === 200 ? true : undefined;
    }, 50, this.options.readyTimeoutMs);
    if (!healthy) {
      child.kill("SIGKILL");
      await node.exited;
      throw new NatsServerError(node.name, `not healthy within ${this.options.readyTimeoutMs} ms`, await tail(node.logFile));
    }
  }

  /** SIGHUP is what `nats-server --signal reload=<pidfile>` sends; config_load_time in /varz tells it took effect. */
  private async reload(node: NatsNode): Promise<void> {
    const before = await loadTime(node);
    node.process?.kill("SIGHUP");
    const loaded = await poll(async () => {
      const now = await loadTime(node);
      return now !== undefined && now !== before ? now : undefined;
    }, 25, this.options.readyTimeoutMs);
    if (loaded === undefined) throw new NatsServerError(node.name, "config reload not seen in time", await tail(node.logFile));
  }
}

async function loadTime(node: NatsNode): Promise<string | undefined> {
  const varz = (await getJson(`${node.monitorUrl}/varz`)) as { config_load_time?: string } | undefined;
  return varz?.config_load_time;
}

async function fetchStatus(url: string): Promise<number | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return undefined;
  }
}

async function getJson(url: string): Promise<unknown> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.ok ? await res.json() : undefined;
  } catch {
    return undefined;
  }
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-8).join("\n");
}

/**
 * Asks `probe` every `intervalMs` until it gives a value, for `timeoutMs`
 * at most (then undefined). A poll of a condition, not a retry of a
 * failure: a probe that throws ends it.
 */
async function poll<T>(probe: () => Promise<T | undefined>, intervalMs: number, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
