import { spawn } from "node:child_process";
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { diskFullError } from "./files.ts";

const exists = (path: string) => lstat(path).then(() => true, () => false);

/** The lock file in a state dir that `netfleet serve` holds while it (or a nats-server it started) runs. */
export const STATE_LOCK_FILE = "serve.lock";

/** Another process holds the state dir's lock; `holders` are the processes that have the lock file open (pid, command name). */
export class StateDirLockedError extends Error {
  readonly holders: { pid: number; name: string }[];
  constructor(dir: string, lockFile: string, holders: { pid: number; name: string }[]) {
    const who = holders.length ? holders.map((h) => `${h.name} pid ${h.pid}`).join(", ") : "a process this user cannot see";
    const hint = holders.some((h) => h.name === "nats-server") && !holders.some((h) => h.name !== "nats-server") ? `; a nats-server left by an earlier serve: stop it (kill ${holders.map((h) => h.pid).join(" ")})` : "";
    super(`state dir ${dir} is in use: ${lockFile} is locked by ${who}${hint}`);
    this.name = "StateDirLockedError";
    this.holders = holders;
  }
}

/**
 * An exclusive flock(2) on `<state dir>/serve.lock`, held by this process
 * for as long as the returned object is not released, and by every child
 * it is handed to (NatsServerOptions.lockFd): a second `netfleet serve` on
 * the same state dir, or one started while a nats-server of an earlier
 * serve still lives, is refused, naming the pids that hold it.
 *
 * Node has no flock(); util-linux's flock(1) places it for us:
 * `flock --exclusive --nonblock 3` with our open file as its fd 3 locks
 * that open file description and exits. flock(2): "Locks created by
 * flock() are associated with an open file description ... the lock is
 * released either by an explicit LOCK_UN operation on any of these
 * duplicate file descriptors, or when all such file descriptors have been
 * closed." So the lock stays ours (and our children's, who inherit the
 * descriptor) after flock(1) is gone, and the kernel drops it when the last
 * of us dies, SIGKILL included: no stale lock to clean up, nothing written.
 * The holders named in the refusal are found by their open descriptors
 * (/proc/PID/fd), since /proc/locks names the flock(1) that placed it.
 */
export class StateDirLock {
  /** The open lock file: pass it to children that must keep the lock while they live. */
  readonly fd: number;
  readonly file: string;
  private released = false;

  private constructor(fd: number, file: string) {
    this.fd = fd;
    this.file = file;
  }

  /**
   * Locks `dir` (which must exist) through its lock file `name` (default serve.lock; the keys commands use
   * keys.lock the same way).
   * @throws StateDirLockedError when another process holds it; DiskFullError when the lock file cannot be
   *   created for lack of space; Error when flock(1) (util-linux) is missing or fails otherwise.
   */
  static async acquire(dir: string, name = STATE_LOCK_FILE): Promise<StateDirLock> {
    const file = join(dir, name);
    let fd: number;
    try {
      // Made empty, 0600, never through a link (writeOwned), then opened O_NOFOLLOW: a link planted in the
      // state dir does not make us lock some other file. 0600: a user who could open it could hold the lock.
      // @netfleet/agent loaded only here (see store/files.ts writeFileWhole: its index is the whole agent).
      if (!(await exists(file))) await (await import("@netfleet/agent")).writeOwned(file, "", 0o600);
      fd = openSync(file, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      throw diskFullError(err, file) ?? err;
    }
    try {
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn("flock", ["--exclusive", "--nonblock", "3"], { stdio: ["ignore", "ignore", "pipe", fd] });
        let stderr = "";
        child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
        child.once("error", (err) => reject(new Error(`flock(1) from util-linux is needed to lock ${file}: ${err.message}`)));
        child.once("exit", (c) => (c === 0 || c === 1 ? resolve(c) : reject(new Error(`flock ${file}: exit ${c}: ${stderr.trim()}`))));
      });
      if (code === 1) throw new StateDirLockedError(dir, file, await lockHolders(file));
      // Two first starts may each have made the file; the lock counts only on the file now at that name.
      const [ours, named] = [fstatSync(fd), await lstat(file).catch(() => undefined)];
      if (!named || named.ino !== ours.ino || named.dev !== ours.dev) {
        closeSync(fd);
        return StateDirLock.acquire(dir, name);
      }
      return new StateDirLock(fd, file);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Closes our descriptor: the lock is free once every child that inherited it has exited too. */
  release(): void {
    if (this.released) return;
    this.released = true;
    closeSync(this.fd);
  }
}

/**
 * What a process runs, for a message: "nats-server", or "netfleet serve"
 * for a node running our CLI's serve, else its first three argv words
 * (/proc/PID/cmdline; node names its main thread "MainThread" in comm).
 */
async function commandOf(pid: string): Promise<string> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0").filter(Boolean);
  const base = (argv[0] ?? "?").split("/").pop()!;
  if (base === "nats-server") return base;
  if (argv.some((a) => /controller\/(src|dist)\/cli\.[jt]s$|netfleet$/.test(a)) && argv.includes("serve")) return "netfleet serve";
  return argv.slice(0, 3).join(" ") || "?";
}

/** Processes (other than this one) with `file` open, by /proc/PID/fd; their command names from /proc/PID/comm. */
export async function lockHolders(file: string): Promise<{ pid: number; name: string }[]> {
  const out: { pid: number; name: string }[] = [];
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")) === file) {
        out.push({ pid: Number(pid), name: await commandOf(pid) });
        break;
      }
    }
  }
  return out;
}
