import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, openSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import PQueue from "p-queue";
import { diskFullError, writeFileWhole } from "../store/files.ts";
import { renderAccounts, renderNodeConfig, type NatsNodeConfig, type NatsUser } from "./config.ts";
import { describe, fetchStatus, getJson, loadTime, natsInfo, poll, tail, type ServerFacts } from "./probe.ts";

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
  /**
   * Start each node through util-linux `setpriv --pdeathsig KILL` (default
   * true): the kernel SIGKILLs the node when the thread that spawned it
   * dies, SIGKILL of this process included (prctl(2) PR_SET_PDEATHSIG, kept
   * across execve(2) of a binary that is not set-user-ID and has no file
   * capabilities; setpriv(1)). setpriv execs nats-server, so the child's pid
   * is the server's. False: spawn nats-server directly (it then outlives a
   * crashed parent).
   */
  dieWithParent?: boolean;
  /** An open descriptor every node inherits as its fd 3 (StateDirLock.fd): the lock is then held while any node lives. */
  lockFd?: number;
  /** stop(): how long a node has after SIGTERM before SIGKILL, ms (default 5000). A node wedged on a full disk ignores SIGTERM. */
  stopGraceMs?: number;
  /** Node i serves nats-server's Go profiler on profBasePort+i (NatsNodeConfig.profPort; benchmarks only). Absent: off. */
  profBasePort?: number;
  /** The Go runtime settings every node starts with (natsServerEnv); default NATS_GO_RUNTIME. */
  goRuntime?: NatsGoRuntime;
}

/**
 * Go runtime settings of the nats-server nodes we start, passed as the
 * environment variables the Go runtime reads once at start (runtime package
 * documentation, "Environment Variables"; nats-server has no config keys
 * for them).
 */
export interface NatsGoRuntime {
  /**
   * GOGC, percent: the next collection starts when the heap has grown this
   * much over the live heap left by the last one (Go's default 100).
   */
  gogc: number;
  /**
   * false: GODEBUG gcshrinkstackoff=1, the collector leaves goroutine
   * stacks at the size they grew to instead of halving those using under a
   * quarter of theirs (runtime/stack.go shrinkstack), which the goroutine
   * then grows again by copying (newstack, copystack).
   */
  shrinkStacks: boolean;
}

/**
 * The fleet's settings: GOGC 400 and no stack shrinking. nats-server keeps a
 * read and a write goroutine per client connection, so with 10,000 agents
 * the collector's own work and the stack shrink-and-regrow it causes were
 * 30% of the server's CPU over a 10,000-host rollout (its Go CPU profile:
 * gcBgMarkWorker 17.7%, copystack 9.9%, gcAssist 2.6%). With these two, a
 * 10,000-host rollout's server CPU fell from 0.32-0.40 to 0.20-0.25 ms per
 * host and enrollment's from 1.19-1.41 to 0.90-0.97, for a peak RSS of
 * 1,237-1,321 MB instead of 1,168-1,170 (2 runs each, 2 cores).
 */
export const NATS_GO_RUNTIME: NatsGoRuntime = { gogc: 400, shrinkStacks: false };

/**
 * The environment a node starts with: `base` (serve's own) with GOGC and
 * GODEBUG set from `runtime`. A GOGC already in `base` is kept, and so is a
 * gcshrinkstackoff setting already in its GODEBUG: an operator who set
 * either for serve overrides ours. Other GODEBUG settings are kept, ours is
 * appended (GODEBUG is a comma-separated name=value list).
 * Pure: `base` is not changed.
 */
export function natsServerEnv(base: NodeJS.ProcessEnv, runtime: NatsGoRuntime): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  if (!env.GOGC) env.GOGC = String(runtime.gogc);
  if (!runtime.shrinkStacks) {
    const debug = (env.GODEBUG ?? "").split(",").filter((s) => s !== "");
    if (!debug.some((s) => s.startsWith("gcshrinkstackoff="))) debug.push("gcshrinkstackoff=1");
    env.GODEBUG = debug.join(",");
  }
  return env;
}

/** How a node ended when nobody asked it to: its exit code or signal, and the last lines of its log. */
export interface NodeExit {
  node: string;
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  error: NatsServerError;
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
  /** Set while we stop, kill or restart it: its exit is then expected, not a failure. */
  stopping: boolean;
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
 *
 * A node is ours only if it is our child: before a launch, a server already
 * answering the node's client or monitoring port is refused (naming its
 * server name, id and start time, and its pid when the node's pid file holds
 * a live nats-server); after it, the server that reports healthy must carry
 * this start's random tag in /varz `tags` and have the same `server_id` in
 * the INFO of the client port, or the start fails. A node that exits when
 * nobody stopped it resolves `failed` (a supervisor, `netfleet serve`,
 * decides what to do: it exits). Config and accounts files are written
 * whole (temp file + rename) or not at all; ENOSPC gives DiskFullError.
 */
export class NatsServer {
  readonly nodes: NatsNode[];
  /** Resolves with the first node exit that nobody asked for (never rejects). */
  readonly failed: Promise<NodeExit>;
  private resolveFailed!: (exit: NodeExit) => void;
  private readonly options: Required<Omit<NatsServerOptions, "users" | "lockFd" | "profBasePort">> & { lockFd: number | undefined };
  /** What every node's process starts with (natsServerEnv). */
  private readonly env: NodeJS.ProcessEnv;
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
      dieWithParent: options.dieWithParent ?? true,
      lockFd: options.lockFd,
      stopGraceMs: options.stopGraceMs ?? 5000,
      goRuntime: options.goRuntime ?? NATS_GO_RUNTIME,
    };
    this.env = natsServerEnv(process.env, this.options.goRuntime);
    this.failed = new Promise((resolve) => (this.resolveFailed = resolve));
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
        ...(options.profBasePort !== undefined ? { profPort: options.profBasePort + i } : {}),
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
        stopping: false,
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
      try {
        await mkdir(node.config.storeDir, { recursive: true, mode: 0o700 });
      } catch (err) {
        throw diskFullError(err, node.config.storeDir) ?? err;
      }
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

  /** SIGKILL: the node dies as in a crash; its store stays for `restart`. Not a failure (`failed` stays pending). */
  async kill(name: string): Promise<void> {
    const node = this.node(name);
    node.stopping = true;
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

  /** SIGTERM, then SIGKILL after `stopGraceMs` (default 5 s); every process is reaped. */
  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        node.stopping = true;
        const child = node.process;
        if (!child) return;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), this.options.stopGraceMs);
        await node.exited;
        clearTimeout(timer);
      }),
    );
  }

  private async writeAccounts(): Promise<void> {
    await writeFileWhole(this.accountsPath, renderAccounts(this.users), 0o600);
  }

  /**
   * Refuses to start a node whose ports already answer (an orphan of an
   * earlier serve, or anyone's server), then starts it with a fresh start
   * tag and waits until it is healthy and proven to be this child.
   */
  private async launch(node: NatsNode): Promise<void> {
    const { host, port, monitorPort } = node.config;
    const clientHost = host.replace(/^\[|\]$/g, "");
    const taken = (await natsInfo(clientHost, port)) ?? ((await getJson(`${node.monitorUrl}/varz`)) as ServerFacts | undefined);
    if (taken) {
      throw new NatsServerError(node.name, `${host}:${port} (monitoring 127.0.0.1:${monitorPort}) is already served by ${await describe(taken, node.config.pidFile)}: stop it first`, "");
    }
    // Lower-case hex: nats-server lower-cases server_tags (seen in /varz of 2.9.10).
    const tag = `netfleet-start:${randomBytes(9).toString("hex")}`;
    node.config = { ...node.config, tags: [tag] };
    await writeFileWhole(node.configFile, renderNodeConfig(node.config), 0o600);
    let fd: number;
    try {
      // O_NOFOLLOW: a link planted at the log's name is not appended through.
      fd = openSync(node.logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw diskFullError(err, node.logFile) ?? err;
    }
    const [command, args] = this.options.dieWithParent
      ? ["setpriv", ["--pdeathsig", "KILL", "--", this.options.binary, "-c", node.configFile]]
      : [this.options.binary, ["-c", node.configFile]];
    const stdio: ("ignore" | number)[] = ["ignore", fd, fd];
    if (this.options.lockFd !== undefined) stdio.push(this.options.lockFd);
    const child = spawn(command, args, { stdio, env: this.env });
    closeSync(fd);
    node.process = child;
    node.stopping = false;
    let started = false;
    node.exited = new Promise((resolve) => {
      const ended = (code: number | null, signal: NodeJS.Signals | null) => {
        if (node.process !== child) return resolve();
        node.process = undefined;
        if (started && !node.stopping) {
          void tail(node.logFile).then((log) => {
            const how = signal ? `killed by ${signal}` : `exit code ${code}`;
            this.resolveFailed({ node: node.name, pid: child.pid, code, signal, error: new NatsServerError(node.name, `pid ${child.pid} ended unexpectedly (${how})`, log) });
          });
        }
        resolve();
      };
      child.once("exit", ended);
      child.once("error", () => ended(null, null));
    });
    let facts: ServerFacts | undefined;
    const healthy = await poll(async () => {
      if (!node.process) throw new NatsServerError(node.name, "exited during start", await tail(node.logFile));
      if ((await fetchStatus(`${node.monitorUrl}/healthz?js-enabled-only=true`)) !== 200) return undefined;
      const varz = (await getJson(`${node.monitorUrl}/varz`)) as ServerFacts | undefined;
      if (!varz?.tags?.includes(tag)) {
        facts = varz;
        return undefined;
      }
      const info = await natsInfo(clientHost, port);
      if (info?.server_id !== varz.server_id) {
        facts = info;
        return undefined;
      }
      return true;
    }, 50, this.options.readyTimeoutMs).catch(async (err: unknown) => {
      if (facts) throw new NatsServerError(node.name, `our nats-server (pid ${child.pid}) could not start; ${host}:${port} is answered by ${await describe(facts, node.config.pidFile)}`, await tail(node.logFile));
      throw err;
    });
    if (!healthy) {
      node.stopping = true;
      child.kill("SIGKILL");
      await node.exited;
      const why = facts ? `${host}:${port} is answered by ${await describe(facts, node.config.pidFile)}, not by our child (pid ${child.pid})` : `not healthy within ${this.options.readyTimeoutMs} ms`;
      throw new NatsServerError(node.name, why, await tail(node.logFile));
    }
    started = true;
  }

  /** SIGHUP is what `nats-server --signal reload=<pidfile>` sends; config_load_time in /varz tells it took effect. */
  private async reload(node: NatsNode): Promise<void> {
    const before = await loadTime(node.monitorUrl);
    node.process?.kill("SIGHUP");
    const loaded = await poll(async () => {
      const now = await loadTime(node.monitorUrl);
      return now !== undefined && now !== before ? now : undefined;
    }, 25, this.options.readyTimeoutMs);
    if (loaded === undefined) throw new NatsServerError(node.name, "config reload not seen in time", await tail(node.logFile));
  }
}
