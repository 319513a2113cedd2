import { execa } from "execa";

/**
 * Tells systemd that the agent is ready (a `Type=notify` unit), once: the
 * unit is ordered before libvirtd, so guests autostart only after the
 * agent's first local pass has put every VM bridge's rules in place.
 * Uses `systemd-notify --ready --pid=<main pid>` (systemd-notify(1); the unit
 * sets `NotifyAccess=all` since the message comes from a child process).
 * The main pid is `$SYSTEMD_EXEC_PID` (systemd.exec(5): the pid systemd
 * started, inherited by its children): the agent itself, or the
 * `supervise` process that runs it. `--pid` sets the unit's MainPID, so it
 * must never be a child's own pid: systemd would then watch the child
 * ("Supervising process N which is not our child") and lose the real main
 * process (test/systemd shows both).
 * Without `$NOTIFY_SOCKET` (not under systemd, or a `Type=simple` unit) it
 * does nothing. A failure is logged, never thrown: readiness is advisory.
 */
export class SystemdReadiness {
  private sent = false;
  private readonly log: (event: Record<string, unknown>) => void;
  constructor(log: (event: Record<string, unknown>) => void) {
    this.log = log;
  }

  /** Sends READY=1 the first time it is called; later calls do nothing. */
  ready(reason: string): void {
    if (this.sent) return;
    this.sent = true;
    if (!process.env.NOTIFY_SOCKET) return;
    void execa("systemd-notify", ["--ready", `--pid=${mainPid()}`], { reject: false, timeout: 5000 }).then((r) => {
      this.log({ event: "systemd-ready", reason, exitCode: r.exitCode, ...(r.exitCode !== 0 ? { stderr: String(r.stderr).slice(0, 200) } : {}) });
    });
  }
}

/** The unit's main pid: `$SYSTEMD_EXEC_PID` when it is a pid, else ours. */
export function mainPid(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SYSTEMD_EXEC_PID);
  return Number.isInteger(v) && v > 1 ? v : process.pid;
}
