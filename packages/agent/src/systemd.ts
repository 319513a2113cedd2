import { execa } from "execa";

/**
 * Tells systemd that the agent is ready (a `Type=notify` unit), once: the
 * unit is ordered before libvirtd, so guests autostart only after the
 * agent's first local pass has put every VM bridge's rules in place.
 * Uses `systemd-notify --ready --pid=<our pid>` (systemd-notify(1); the unit
 * sets `NotifyAccess=all` since the message comes from a child process).
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
    void execa("systemd-notify", ["--ready", `--pid=${process.pid}`], { reject: false, timeout: 5000 }).then((r) => {
      this.log({ event: "systemd-ready", reason, exitCode: r.exitCode, ...(r.exitCode !== 0 ? { stderr: String(r.stderr).slice(0, 200) } : {}) });
    });
  }
}
