/**
 * Runs vmhost.yml with ansible-playbook from the lab's controller namespace
 * (Ansible's control node, on the management network) against the
 * inventory of inventory.ts, and reads its result through Ansible's `json`
 * stdout callback: per host ok / changed / failures / unreachable, wall time.
 */
import { execa } from "execa";
import { mkdirSync } from "node:fs";
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
}

interface JsonCallback {
  plays: { tasks: { task: { name: string }; hosts: Record<string, { failed?: boolean; unreachable?: boolean; msg?: string; stderr?: string; results?: { failed?: boolean; msg?: string; stderr?: string }[] }> }[] }[];
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
  const t = performance.now();
  const r = await execa("ip", ["netns", "exec", ssh.controlNs, "env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "ansible-playbook", "-i", inventory, PLAYBOOK], {
    reject: false,
    timeout: timeoutMs,
    cwd: import.meta.dirname,
    maxBuffer: 256 * 1024 * 1024,
  });
  const wallMs = performance.now() - t;
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
  return {
    wallMs,
    exitCode: r.exitCode ?? -1,
    stats,
    changed: Object.values(stats).reduce((s, h) => s + h.changed, 0),
    failedHosts: Object.entries(stats).filter(([, h]) => h.failures > 0 || h.unreachable > 0).map(([h]) => h),
    failures,
  };
}
