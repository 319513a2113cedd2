import { mkdir } from "node:fs/promises";
import { isIPv6 } from "node:net";
import { resolve } from "node:path";
import { createEventLog, formatMetricsListen, isIpv4, isNatsUrl, resolveLogLevel, startMetricsServer, type Inventory, type LogLevel, type MetricsListen, type MetricsServer } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import { ServeMetrics } from "../metrics.ts";
import { formatUiListen } from "../ui/listen.ts";
import { NatsServer, type NodeExit } from "../nats/server.ts";
import { diskFullIn, freeBytes, MIN_FREE_BYTES, watchDisk } from "../nats/supervise.ts";
import { DiskFullError, diskFullError } from "../store/files.ts";
import { StateDirLock } from "../store/lock.ts";
import { ControllerHome } from "../store/home.ts";
import { CredentialStore } from "../store/credentials.ts";
import { UserSync } from "../enrollment/users.ts";
import type { CommandOutput } from "../output.ts";
import { connectController, withTimeout } from "./connect.ts";
import { startUi, type UiOptions } from "../ui/start.ts";
import type { UiServer } from "../ui/server.ts";

/** What `netfleet serve` was asked: the state dir and where its NATS runs. */
export interface ServeOptions {
  stateDir: string;
  /** Run nats-server ourselves (default), listening here. */
  listen?: { host: string; port: number };
  nodes: 1 | 3;
  /** Use servers someone else runs: no approvals that change NATS users then. */
  external?: string[];
  /** Serve Prometheus metrics (ServeMetrics) here; undefined: no listener. */
  metrics?: MetricsListen;
  /** The log level (`--log-level`); else NETFLEET_LOG_LEVEL, else info (resolveLogLevel). */
  logLevel?: LogLevel;
  /** The read-only dashboard (`--ui`, ui/server.ts); undefined: none. */
  ui?: UiOptions;
}

/** host:port of the first site.nats URL: where serve's own nats-server listens unless --listen says otherwise. */
function defaultListen(inventory: Inventory): { host: string; port: number } {
  const first = inventory.site.nats[0];
  if (first === undefined || !isNatsUrl(first)) return { host: "127.0.0.1", port: 4222 };
  const url = new URL(first);
  return { host: url.hostname, port: Number(url.port) };
}

/**
 * Parses `--listen ADDRESS:PORT` (IPv4 address, `localhost` or a bracketed IPv6 address; port 1-65000).
 * @throws Error naming the expected form.
 */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(text.trim());
  const host = m?.[1] ?? "";
  const port = Number(m?.[2]);
  const hostOk = host.toLowerCase() === "localhost" || isIpv4(host) || (host.startsWith("[") && host.endsWith("]") && isIPv6(host.slice(1, -1)));
  if (!m || !hostOk || port < 1 || port > 65000) throw new Error(`--listen takes ADDRESS:PORT (e.g. 127.0.0.1:4222), not ${JSON.stringify(text)}`);
  return { host, port };
}

/** How long serve may take to stop after SIGTERM/SIGINT, in every state (then it exits; nats-server dies with it). */
export const STOP_DEADLINE_MS = 9000;
/** Of that, how long the control plane may take to drain before nats-server is stopped. */
const CLOSE_MS = 2000;
/** Of that, how long nats-server has after SIGTERM before SIGKILL (one wedged on a full disk ignores SIGTERM). */
const NATS_GRACE_MS = 4000;

/** Why serve stopped serving: asked to, its nats-server died, or the disk filled. */
type Stop = { kind: "signal" } | { kind: "nats-exited"; exit: NodeExit } | { kind: "disk-full"; path: string };

/**
 * `netfleet serve`: the long-lived controller service. Starts nats-server
 * (JetStream; 1 node, or a 3-node cluster on ports P, P+1, P+2), answers
 * enrollments (token → approved with its own NATS user; otherwise
 * quarantined), records heartbeats, and serves `netfleet hosts
 * approve|reject`. Runs until SIGTERM/SIGINT, then stops its nats-server.
 *
 * Supervision (issue 15):
 * - One serve per state dir: an exclusive flock on `<state dir>/serve.lock`
 *   (StateDirLock), inherited by its nats-server; a second serve, or one
 *   started while an earlier serve's nats-server lives, fails with
 *   "state dir D is in use: D/serve.lock is locked by <name> pid N".
 * - The nats-server is its child or nothing: ports already answered are
 *   refused, and the healthy server must carry this start's tag and
 *   server_id (NatsServer); it runs under `setpriv --pdeathsig KILL`, so it
 *   dies with serve, SIGKILL of serve included.
 * - When its nats-server ends unasked (crash, kill -9, OOM), serve does not
 *   restart it: it logs `nats-exited` and exits 1 with
 *   "nats-server nf-1 pid N ended unexpectedly (...)": a supervisor above
 *   (systemd Restart=on-failure) starts serve again, which checks the state
 *   dir and the port anew. Nothing is lost: desired state, approvals and
 *   reports are in JetStream, credentials in the state dir.
 * - A full disk (the state dir's file system under 1 MiB free, ENOSPC from a
 *   state-dir write, JetStream "insufficient resources") logs `disk-full`
 *   and exits 1 with "disk full: <path>"; nats-server 2.9 wedges on a full
 *   store until restarted (see watchDisk). A start on a full disk fails with
 *   the same line. Files are written whole or not at all (writeFileWhole).
 * - SIGTERM/SIGINT stop serve within STOP_DEADLINE_MS in every state (mid
 *   start, NATS unreachable, enrollment wedged): the control plane gets
 *   2 s to drain, nats-server 4 s after SIGTERM before SIGKILL; past the
 *   deadline the process exits (and the kernel kills the nats-server).
 *
 * Observability (issue 16): one JSON line per event on `out` with its
 * level (createEventLog: `{"level":"info","ts":...,"event":...}`), lines
 * under `o.logLevel` dropped; Prometheus metrics (ServeMetrics: hosts at
 * the desired revision, failed, reconnects, process) on `o.metrics` from
 * the ready line on. A metrics address that cannot be listened on is
 * logged as `metrics-unavailable` and serve runs on without it.
 *
 * Dashboard (issue 17): with `o.ui`, the read-only web dashboard
 * (ui/server.ts) on that address from the ready line on, logged
 * `ui-listening` with its URL; one it cannot listen on is logged
 * `ui-unavailable` and serve runs on without it, as for metrics.
 *
 * `until` (tests in one process): resolves to stop, instead of signals; no
 * process exit is forced then.
 * @throws StateDirLockedError, NatsServerError, DiskFullError, LogLevelError (NETFLEET_LOG_LEVEL holds no level), or Error naming the dead nats-server (exit 1 in the CLI).
 */
export async function serveCommand(inventory: Inventory, o: ServeOptions, out: CommandOutput, until?: Promise<void>): Promise<number> {
  const level = resolveLogLevel({ flag: o.logLevel });
  const log = createEventLog({ level, write: (line) => out.line(line) });
  log({ event: "settings", level: "debug", stateDir: o.stateDir, listen: o.listen ?? null, nodes: o.nodes, external: o.external ?? null, metrics: o.metrics ? formatMetricsListen(o.metrics) : "off", ui: o.ui ? formatUiListen(o.ui.listen) : "off", logLevel: level });
  const home = new ControllerHome(o.stateDir);
  const inProcess = until !== undefined;
  let signalled!: () => void;
  const stopAsked = new Promise<Stop>((resolve) => (signalled = () => resolve({ kind: "signal" })));
  const onSignal = () => {
    signalled();
    // Whatever hangs (a drain, a wedged nats-server), the process ends by the deadline; the kernel then kills nats-server (pdeathsig).
    if (!inProcess) setTimeout(() => process.exit(1), STOP_DEADLINE_MS).unref();
  };
  if (until) void until.then(onSignal);
  else {
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
  let diskFull!: (path: string) => void;
  const diskFilled = new Promise<Stop>((resolve) => (diskFull = (path) => resolve({ kind: "disk-full", path })));
  let server: NatsServer | undefined;
  let cp: ControlPlane | undefined;
  let lock: StateDirLock | undefined;
  let metricsServer: MetricsServer | undefined;
  let uiServer: UiServer | undefined;
  let stopWatch = () => {};
  /** A start phase, or the reason to stop serving that came first. */
  const phase = async <T>(p: Promise<T>, during?: Promise<Stop>): Promise<T | Stop> =>
    Promise.race([p, stopAsked, diskFilled, ...(during ? [during] : [])]);
  const isStop = (v: unknown): v is Stop => typeof v === "object" && v !== null && ["signal", "nats-exited", "disk-full"].includes((v as Stop).kind);
  let code = 0;
  try {
    try {
      await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw diskFullError(err, o.stateDir) ?? err;
    }
    lock = await StateDirLock.acquire(o.stateDir);
    const free = await freeBytes(o.stateDir);
    if (free !== undefined && free < MIN_FREE_BYTES) throw new DiskFullError(o.stateDir);
    stopWatch = watchDisk(o.stateDir, (path) => {
      log({ event: "disk-full", path, error: `disk full: ${path}` });
      diskFull(path);
    });
    const secrets = await home.secrets(inventory.site.name);
    let exited: Promise<Stop> | undefined;
    if (!o.external) {
      const listen = o.listen ?? defaultListen(inventory);
      // The users the service will keep in sync, from the start: agents approved before reconnect at once.
      const credentials = new CredentialStore(home.credentialsDir);
      const users = await new UserSync({ site: secrets.site, controller: secrets.controller, enrollmentPassword: secrets.enrollment.enrollPassword, hosts: inventory.hosts, credentials }).users();
      const starting = NatsServer.start({ dir: home.natsDir, nodes: o.nodes, host: listen.host, basePort: listen.port, users, lockFd: lock.fd, stopGraceMs: NATS_GRACE_MS });
      const started = await phase(starting);
      if (isStop(started)) {
        void starting.then((s) => s.stop(), () => {});
        return finish(started);
      }
      server = started;
      exited = server.failed.then((exit) => ({ kind: "nats-exited", exit }) as Stop);
      log({ event: "nats-started", urls: server.urls, nodes: o.nodes, dir: home.natsDir, pids: server.nodes.map((n) => n.process?.pid) });
    }
    const servers = server?.urls ?? o.external!;
    const storeDir = home.natsDir;
    const cpLog = (event: Record<string, unknown>) => {
      log(event);
      const full = diskFullIn(event, storeDir);
      if (full !== undefined) {
        log({ event: "disk-full", path: full, error: `disk full: ${full}` });
        diskFull(full);
      }
    };
    const connecting = connectController({ stateDir: o.stateDir, inventory, servers, replicas: o.nodes, ...(server ? { userDirectory: server } : {}), log: cpLog });
    const connected = await phase(connecting, exited);
    if (isStop(connected)) {
      void connecting.then((c) => c.cp.close(), () => {});
      return finish(connected);
    }
    cp = connected.cp;
    const serving = await phase(cp.serve(), exited);
    if (isStop(serving)) return finish(serving);
    if (o.metrics) metricsServer = await startMetrics(o.metrics, cp, log);
    if (o.ui) uiServer = await startUi(o.ui, cp, inventory, log);
    await home.saveConfig({ site: secrets.site, inventory: resolve(inventory.dir), nats: servers, replicas: o.nodes, pid: process.pid, startedAt: new Date().toISOString() });
    log({ event: "ready", site: secrets.site, nats: servers, stateDir: o.stateDir, joinToken: `netfleet token --state-dir ${o.stateDir}` });
    return finish(await Promise.race([stopAsked, diskFilled, ...(exited ? [exited] : [])]));
  } finally {
    stopWatch();
    if (!inProcess) {
      process.removeListener("SIGTERM", onSignal);
      process.removeListener("SIGINT", onSignal);
    }
    await metricsServer?.close();
    await uiServer?.close();
    await withTimeout(cp?.close() ?? Promise.resolve(), CLOSE_MS, "control plane drain").catch(() => {});
    await server?.stop();
    lock?.release();
    // A connection or retry that still holds the event loop must not keep a stopped serve alive.
    if (!inProcess) setTimeout(() => process.exit(process.exitCode ?? code), 1000).unref();
  }

  function finish(stop: Stop): number {
    if (stop.kind === "signal") {
      log({ event: "stopping" });
      return 0;
    }
    code = 1;
    if (stop.kind === "disk-full") throw new DiskFullError(stop.path);
    const { exit } = stop;
    log({ event: "nats-exited", node: exit.node, pid: exit.pid, code: exit.code, signal: exit.signal, log: exit.error.log });
    throw new Error(`nats-server ${exit.node} ${exit.error.message.split("\n")[0]!.replace(`nats-server ${exit.node}: `, "")}; serve stops (its supervisor starts it again)`);
  }
}

/**
 * serve's /metrics listener on `listen` (its rollout gauges read through
 * `cp.status()`; reconnects of `cp`'s connection counted), or undefined,
 * logged `metrics-unavailable`, when it cannot listen (startMetricsServer).
 */
function startMetrics(listen: MetricsListen, cp: ControlPlane, log: (event: Record<string, unknown>) => void): Promise<MetricsServer | undefined> {
  const metrics = new ServeMetrics(() => cp.status());
  void (async () => {
    for await (const s of cp.nc.status()) if (s.type === "reconnect") metrics.reconnects.inc();
  })().catch(() => {});
  return startMetricsServer(listen, () => metrics.page(), log);
}
