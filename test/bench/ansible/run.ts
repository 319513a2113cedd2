/**
 * Runs vmhost.yml with ansible-playbook from the lab's controller namespace
 * (Ansible's control node, on the management network) against the
 * inventory of inventory.ts, and reads its result through Ansible's `json`
 * stdout callback: per host ok / changed / failures / unreachable, wall time.
 */
import { execa } from "execa";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SshTargets } from "@netfleet/lab";

export const PLAYBOOK = join(import.meta.dirname, "vmhost.yml");

/** Ansible's per-host recap (the `stats` of the json callback). */
export interface HostStats {
  ok: number;
  changed: number;
  failures: number;
  unreachable: number;
  skipped: number;
}

export interface PlaybookRun {
  wallMs: number;
  exitCode: number;
  stats: Record<string, HostStats>;
  /** Sum of `changed` over hosts. */
  changed: number;
  /** Hosts with failures or unreachable. */
  failedHosts: string[];
  /** Failed tasks' messages (host: task: msg), for a failing run's error. */
  failures: string[];
  /**
   * Each task's wall time over all hosts (ms, from the json callback's task
   * `duration` start/end), in play order: what profile_tasks prints, without a
   * second stdout callback mixed into the JSON.
   */
  tasks: { name: string; ms: number }[];
  /**
   * CPU-ms of the run on the control node: ansible-playbook, its forks and
   * their ssh clients (this process's reaped children, /proc/self/stat cutime
   * + cstime; ssh's ControlPersist masters detach and are not counted).
   * Valid when nothing else this process started ends during the run.
   */
  controlCpuMs: number;
  /**
   * CPU-ms on the targets: every process under the targets' sshd listeners
   * (sessions, shells, the modules' Python), live ones and reaped ones
   * (utime + stime + cutime + cstime over the sshd trees, before and after).
   */
  targetCpuMs: number;
  /** SSH connections the targets' sshds accepted during the run ("Accepted publickey" lines in their sshd.log). */
  connections: number;
}

/** "Accepted publickey" lines in the targets' sshd logs (labSshd's <dir>/<host>/sshd.log). */
function accepted(ssh: SshTargets): number {
  let n = 0;
  for (const t of ssh.targets) {
    try {
      n += readFileSync(join(ssh.dir, t.host, "sshd.log"), "utf8").split("\n").filter((l) => l.includes("Accepted publickey")).length;
    } catch {
      // no log yet: no connection
    }
  }
  return n;
}

/** Linux's USER_HZ: /proc's times are in 1/100 s. */
const TICK_MS = 10;

/** [pid, ppid, utime + stime, cutime + cstime] of every process (ticks). */
function procTable(): [number, number, number, number][] {
  const out: [number, number, number, number][] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "utf8");
      // After "pid (comm) ": state is field 3 (index 0), ppid 4, utime 14, stime 15, cutime 16, cstime 17.
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      out.push([Number(d), Number(f[1]), Number(f[11]) + Number(f[12]), Number(f[13]) + Number(f[14])]);
    } catch {
      // gone between readdir and read
    }
  }
  return out;
}

/** Ticks of CPU under the processes `roots`: their reaped children's, and every live descendant's own and reaped children's. */
function treeTicks(roots: number[]): number {
  const table = procTable();
  const kids = new Map<number, number[]>();
  for (const [pid, ppid] of table) kids.set(ppid, [...(kids.get(ppid) ?? []), pid]);
  const byPid = new Map(table.map((r) => [r[0], r]));
  let ticks = 0;
  const stack = roots.filter((r) => byPid.has(r));
  for (const r of stack) ticks += byPid.get(r)![3];
  const seen = new Set(stack);
  while (stack.length > 0) {
    for (const c of kids.get(stack.pop()!) ?? []) {
      if (seen.has(c)) continue;
      seen.add(c);
      ticks += byPid.get(c)![2] + byPid.get(c)![3];
      stack.push(c);
    }
  }
  return ticks;
}

/** This process's reaped children's CPU, ticks. */
function childTicks(): number {
  const st = readFileSync("/proc/self/stat", "utf8");
  const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
  return Number(f[13]) + Number(f[14]);
}

interface JsonCallback {
  plays: { tasks: { task: { name: string; duration?: { start?: string; end?: string } }; hosts: Record<string, { failed?: boolean; unreachable?: boolean; msg?: string; stderr?: string; results?: { failed?: boolean; msg?: string; stderr?: string }[] }> }[] }[];
  stats: Record<string, HostStats>;
}

/**
 * One ansible-playbook run (`forks` parallel hosts, SSH pipelining, the
 * ControlMaster sockets under the lab's ans/cp). Bounded by `timeoutMs`
 * (killed by execa on expiry). Throws when ansible-playbook prints no JSON.
 */
export async function runPlaybook(ssh: SshTargets, inventory: string, forks: number, timeoutMs = 1_200_000): Promise<PlaybookRun> {
  const cp = join(ssh.dir, "cp");
  const tmp = join(ssh.dir, "tmp");
  mkdirSync(cp, { recursive: true, mode: 0o700 });
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  const env = {
    ANSIBLE_STDOUT_CALLBACK: "json",
    ANSIBLE_LOAD_CALLBACK_PLUGINS: "1",
    ANSIBLE_HOST_KEY_CHECKING: "True",
    ANSIBLE_PIPELINING: "True",
    ANSIBLE_FORKS: String(forks),
    ANSIBLE_SSH_CONTROL_PATH_DIR: cp,
    ANSIBLE_LOCAL_TEMP: tmp,
    ANSIBLE_RETRY_FILES_ENABLED: "False",
    ANSIBLE_NOCOLOR: "1",
    ANSIBLE_CONFIG: join(import.meta.dirname, "ansible.cfg"),
  };
  const sshds = ssh.targets.map((x) => x.sshdPid);
  const target0 = treeTicks(sshds);
  const control0 = childTicks();
  const conn0 = accepted(ssh);
  const t = performance.now();
  const r = await execa("ip", ["netns", "exec", ssh.controlNs, "env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "ansible-playbook", "-i", inventory, PLAYBOOK], {
    reject: false,
    timeout: timeoutMs,
    cwd: import.meta.dirname,
    maxBuffer: 256 * 1024 * 1024,
  });
  const wallMs = performance.now() - t;
  const controlCpuMs = (childTicks() - control0) * TICK_MS;
  const targetCpuMs = (treeTicks(sshds) - target0) * TICK_MS;
  const connections = accepted(ssh) - conn0;
  let out: JsonCallback;
  try {
    out = JSON.parse(r.stdout) as JsonCallback;
  } catch {
    throw new Error(`ansible-playbook exited ${r.exitCode}${r.timedOut ? " (timed out)" : ""} without its JSON: ${(r.stderr || r.stdout).slice(0, 2000)}`);
  }
  const failures: string[] = [];
  for (const play of out.plays)
    for (const task of play.tasks)
      for (const [host, res] of Object.entries(task.hosts)) {
        if (res.failed || res.unreachable) failures.push(`${host}: ${task.task.name}: ${res.msg ?? res.stderr ?? ""}`);
        for (const item of res.results ?? []) if (item.failed) failures.push(`${host}: ${task.task.name}: ${item.msg ?? ""} ${item.stderr ?? ""}`.trim());
      }
  const stats = out.stats;
  const tasks = out.plays.flatMap((p) => p.tasks.map((t) => ({ name: t.task.name, ms: t.task.duration?.start && t.task.duration.end ? Date.parse(t.task.duration.end) - Date.parse(t.task.duration.start) : Number.NaN })));
  return {
    wallMs,
    exitCode: r.exitCode ?? -1,
    stats,
    changed: Object.values(stats).reduce((s, h) => s + h.changed, 0),
    failedHosts: Object.entries(stats).filter(([, h]) => h.failures > 0 || h.unreachable > 0).map(([h]) => h),
    failures,
    tasks,
    controlCpuMs,
    targetCpuMs,
    connections,
  };
}

/** The `top` costliest tasks of a run, "name ms (share %)" each, costliest first. */
export function topTasks(run: PlaybookRun, top = 5): string[] {
  const total = run.tasks.reduce((s, t) => s + (Number.isFinite(t.ms) ? t.ms : 0), 0);
  return [...run.tasks]
    .filter((t) => Number.isFinite(t.ms))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top)
    .map((t) => `${t.name} ${Math.round(t.ms)} ms (${total > 0 ? Math.round((100 * t.ms) / total) : 0} %)`);
}
