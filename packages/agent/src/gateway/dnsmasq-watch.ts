import { constants } from "node:fs";
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import { processArgv } from "../engine.ts";
import { DNSMASQ_LOG_KEEP, DNSMASQ_LOG_MAX_BYTES, dnsmasqFiles, isOurDnsmasq } from "../resources/dnsmasq.ts";
import type { Toolbox } from "../tools.ts";

/** What the watcher reads of the host and does to it (tests may replace it). */
export interface WatchHost {
  readFile(path: string): Promise<string | undefined>;
  processArgv(pid: number): Promise<string[] | undefined>;
  /** Size in bytes, undefined when missing. */
  size(path: string): Promise<number | undefined>;
  /** Moves a log aside (rotateLog). */
  rotate(log: string, keep: number): Promise<void>;
  /** dnsmasq(8): SIGUSR2 makes a dnsmasq logging to a file close and reopen it. */
  reopenLog(pid: number): void;
}

/** Which dnsmasq instances to watch (the assignment's networks), and what to do when one exits. */
export interface DnsmasqWatchOptions {
  tools: Toolbox;
  /** The networks whose dnsmasq this host runs now (its assignment's dnsmasq resources). */
  networks: () => readonly string[];
  /**
   * Our dnsmasq of `network` (pid `pid`) has exited: the caller runs the
   * dnsmasq handler's plan (a pass), which starts it again. Never a shell.
   */
  onExit: (network: string, pid: number) => void;
  log: (event: Record<string, unknown>) => void;
  /** Poll period, ms (default 250: a crash is seen within 250 ms). */
  intervalMs?: number;
  /** A network's log is rotated past this size, bytes (default DNSMASQ_LOG_MAX_BYTES, 10 MiB). */
  logMaxBytes?: number;
  /** Rotated logs kept (`.1` … `.N`; default DNSMASQ_LOG_KEEP). */
  logKeep?: number;
  host?: WatchHost;
}

/** Exits of one network within this window, ms, beyond the first few, are restarted after a growing pause. */
const CRASH_WINDOW_MS = 60_000;
const CRASHES_AT_ONCE = 3;
const MAX_PAUSE_MS = 30_000;

const realHost: WatchHost = {
  readFile: (path) => readFile(path, "utf8").catch(() => undefined),
  processArgv,
  size: (path) => stat(path).then((s) => s.size, () => undefined),
  rotate: (log, keep) => rotateLog(log, keep),
  reopenLog: (pid) => process.kill(pid, "SIGUSR2"),
};

/**
 * Supervises this host's dnsmasqs between passes. Every `intervalMs` it
 * reads each network's pid file; a pid whose process runs our config
 * (isOurDnsmasq: argv[0] dnsmasq, our --conf-file) is watched from then on.
 * When a watched pid is gone (or no longer ours: exited, its pid reused) it
 * logs `dnsmasq-exit` and calls `onExit`: a crashed dnsmasq is started again
 * within one poll period plus one dnsmasq pass. A pid never verified as ours
 * is never acted on. After CRASHES_AT_ONCE exits of one network within a
 * minute, each further restart waits 1 s, 2 s, 4 s … (at most 30 s), so a
 * dnsmasq that dies at once does not spin the agent.
 *
 * Logs: when a watched network's log file passes `logMaxBytes`, it is
 * renamed to `.1` (`.1` to `.2`, … up to `logKeep`, the oldest dropped), an
 * empty file with the old one's owner and mode 0640 takes its place, and
 * dnsmasq gets SIGUSR2 to reopen it (dnsmasq(8), SIGUSR2: it reopens the
 * file as its unprivileged user, so the new file must exist and be its).
 */
export class DnsmasqWatch {
  private readonly options: DnsmasqWatchOptions;
  private readonly host: WatchHost;
  private readonly watched = new Map<string, number>();
  private readonly exits = new Map<string, number[]>();
  private timer: NodeJS.Timeout | undefined;
  private delayed = new Set<NodeJS.Timeout>();
  private ticking: Promise<void> = Promise.resolve();
  private stopped = true;

  constructor(options: DnsmasqWatchOptions) {
    this.options = options;
    this.host = options.host ?? realHost;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
    await this.ticking;
  }

  /** The pids watched now, by network (for status and tests). */
  pids(): Record<string, number> {
    return Object.fromEntries(this.watched);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.tick()
        .catch((err: unknown) => this.options.log({ event: "dnsmasq-watch-error", error: (err as Error).message }))
        .finally(() => this.schedule());
    }, this.options.intervalMs ?? 250);
  }

  /** One look at every network: exits noticed, new pids of ours adopted, logs rotated. */
  async tick(): Promise<void> {
    const networks = new Set(this.options.networks());
    for (const network of [...this.watched.keys()]) if (!networks.has(network)) this.watched.delete(network);
    for (const network of networks) {
      const f = dnsmasqFiles(this.options.tools.runDir, network, this.options.tools.stateDir);
      const known = this.watched.get(network);
      if (known !== undefined) {
        if (isOurDnsmasq(await this.host.processArgv(known), f.conf)) {
          await this.rotate(network, known, f.log);
          continue;
        }
        this.watched.delete(network);
        this.exited(network, known);
        continue;
      }
      const pid = Number((await this.host.readFile(f.pid))?.trim());
      if (Number.isInteger(pid) && pid > 0 && isOurDnsmasq(await this.host.processArgv(pid), f.conf)) this.watched.set(network, pid);
    }
  }

  private exited(network: string, pid: number): void {
    const now = Date.now();
    const recent = (this.exits.get(network) ?? []).filter((t) => now - t < CRASH_WINDOW_MS);
    recent.push(now);
    this.exits.set(network, recent);
    const beyond = recent.length - CRASHES_AT_ONCE;
    const pauseMs = beyond > 0 ? Math.min(MAX_PAUSE_MS, 1000 * 2 ** (beyond - 1)) : 0;
    this.options.log({ event: "dnsmasq-exit", network, pid, restartInMs: pauseMs });
    if (pauseMs === 0) {
      this.options.onExit(network, pid);
      return;
    }
    const t = setTimeout(() => {
      this.delayed.delete(t);
      if (!this.stopped) this.options.onExit(network, pid);
    }, pauseMs);
    this.delayed.add(t);
  }

  private async rotate(network: string, pid: number, log: string): Promise<void> {
    const max = this.options.logMaxBytes ?? DNSMASQ_LOG_MAX_BYTES;
    const bytes = await this.host.size(log);
    if (bytes === undefined || bytes <= max) return;
    await this.host.rotate(log, this.options.logKeep ?? DNSMASQ_LOG_KEEP);
    this.host.reopenLog(pid);
    this.options.log({ event: "dnsmasq-log-rotated", network, pid, bytes });
  }
}

/**
 * Renames `log` to `log.1` (and `log.i` to `log.i+1`, `log.keep` replaced)
 * and puts an empty `log` with the old one's owner, group and mode in its
 * place (the dnsmasq resource makes it `<dnsmasq user>:root` 0660, so that
 * root without CAP_DAC_OVERRIDE, under the agent's unit, can open it):
 * logrotate's `create` for a daemon that reopens on a signal. The new file
 * is made beside (`log.netfleet-new`) and renamed in, so `log` never exists
 * with another owner. Throws on an I/O error.
 */
export async function rotateLog(log: string, keep: number): Promise<void> {
  const ignoreMissing = (err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  };
  const old = await stat(log);
  const next = `${log}.netfleet-new`;
  await rm(next, { force: true });
  const mode = old.mode & 0o777;
  const fh = await open(next, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await fh.chown(old.uid, old.gid);
    await fh.chmod(mode);
  } finally {
    await fh.close();
  }
  for (let i = keep - 1; i >= 1; i--) await rename(`${log}.${i}`, `${log}.${i + 1}`).catch(ignoreMissing);
  await rename(log, `${log}.1`);
  await rename(next, log);
}
