import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";

/**
 * Process bookkeeping for the lab, by reading /proc: no command, no shell.
 * Only processes the lab can prove are its own are ever signalled.
 */

export function readPidfile(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

interface ProcInfo {
  comm: string;
  state: string;
  ppid: number;
}

function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const [state, ppid] = stat.slice(close + 2).split(" ");
    return { comm, state: state ?? "?", ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** Running (not a zombie), and when `comm` is given, really that program (comm is cut to 15 bytes). */
export function isAlive(pid: number | undefined, comm?: string): boolean {
  if (pid === undefined) return false;
  const info = procInfo(pid);
  if (!info || info.state === "Z" || info.state === "X") return false;
  return comm === undefined || info.comm === comm.slice(0, 15);
}

/** Pid from a pidfile when that process runs and is `comm`. */
export function pidfileAlive(path: string, comm: string): number | undefined {
  const pid = readPidfile(path);
  return isAlive(pid, comm) ? pid : undefined;
}

/** Inode of a named network namespace (`ip netns add` keeps it bound at /run/netns/NAME). */
export function netnsInode(name: string): number | undefined {
  try {
    return statSync(`/run/netns/${name}`).ino;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` runs in the named network namespace (a daemon left in a deleted one does not). */
export function pidInNetns(pid: number | undefined, name: string): boolean {
  const ino = netnsInode(name);
  if (pid === undefined || ino === undefined) return false;
  try {
    return readlinkSync(`/proc/${pid}/ns/net`) === `net:[${ino}]`;
  } catch {
    return false;
  }
}

/** True when named network namespace `name` exists (`/run/netns/<name>`, as `ip netns` keeps them). */
export function namespaceExists(name: string): boolean {
  return existsSync(`/run/netns/${name}`);
}

/** Named network namespaces whose name starts with `<prefix>-`. */
export function namespacesWithPrefix(prefix: string): string[] {
  let names: string[];
  try {
    names = readdirSync("/run/netns");
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(`${prefix}-`)).sort();
}

function ancestors(): Set<number> {
  const out = new Set<number>([process.pid]);
  let pid = process.ppid;
  for (let i = 0; i < 64 && pid > 1 && !out.has(pid); i++) {
    out.add(pid);
    pid = procInfo(pid)?.ppid ?? 0;
  }
  return out;
}

function mentions(text: string, dir: string): boolean {
  return text === dir || text.includes(`${dir}/`) || text.endsWith(dir);
}

/**
 * Live processes that belong to a lab: inside one of its network namespaces
 * (by namespace inode), or whose arguments, working directory or root refer
 * to its run dir. Never this process or its ancestors.
 */
export function labProcesses(opts: { netnsInodes: Set<number>; runDir: string }): { pid: number; comm: string; why: string }[] {
  const skip = ancestors();
  const found: { pid: number; comm: string; why: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (skip.has(pid)) continue;
    const info = procInfo(pid);
    if (!info || info.state === "Z" || info.state === "X") continue;
    let why: string | undefined;
    try {
      const link = readlinkSync(`/proc/${pid}/ns/net`);
      const m = /^net:\[(\d+)\]$/.exec(link);
      if (m && opts.netnsInodes.has(Number(m[1]))) why = "in a lab network namespace";
    } catch {
      /* gone, or a kernel thread */
    }
    if (!why) {
      try {
        const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
        if (args.some((a) => mentions(a, opts.runDir))) why = "arguments mention the run dir";
      } catch {
        /* gone */
      }
    }
    if (!why) {
      for (const link of ["cwd", "root"]) {
        try {
          const target = readlinkSync(`/proc/${pid}/${link}`);
          if (target !== "/" && mentions(target, opts.runDir)) why = `${link} in the run dir`;
        } catch {
          /* gone */
        }
      }
    }
    if (why) found.push({ pid, comm: info.comm, why });
  }
  return found;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, wait up to `graceMs`, then SIGKILL and wait up to 2 s more. Returns the pids still running. */
export async function terminate(pids: number[], graceMs = 3000): Promise<number[]> {
  const signal = (list: number[], sig: NodeJS.Signals) => {
    for (const pid of list) {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  const waitGone = async (list: number[], ms: number) => {
    const until = Date.now() + ms;
    let left = list.filter((p) => isAlive(p));
    while (left.length > 0 && Date.now() < until) {
      await sleep(25);
      left = left.filter((p) => isAlive(p));
    }
    return left;
  };
  const live = [...new Set(pids)].filter((p) => isAlive(p));
  if (live.length === 0) return [];
  signal(live, "SIGTERM");
  const stubborn = await waitGone(live, graceMs);
  if (stubborn.length === 0) return [];
  signal(stubborn, "SIGKILL");
  return waitGone(stubborn, 2000);
}
