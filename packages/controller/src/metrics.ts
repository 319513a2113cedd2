import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { HostStatus } from "./store/status.ts";

/** How long one scrape waits for the status rows before it serves the last ones (and counts an error). */
export const STATUS_READ_TIMEOUT_MS = 10_000;

/** The status rows, as `netfleet status` reads them (ControlPlane.status: registry, desired, applied and corrective buckets). */
export type StatusSource = () => Promise<HostStatus[]>;

/**
 * `netfleet serve`'s Prometheus metrics, on a registry of its own. The
 * rollout gauges are read from the stores serve already has, once per
 * scrape (the same rows as `netfleet status`; concurrent scrapes share one
 * read):
 *
 * - `netfleet_hosts{state}`: hosts by enrollment state (`approved`,
 *   `quarantined`, `rejected`, `unenrolled`: an inventory host that never enrolled).
 * - `netfleet_rollout_hosts_desired`: hosts with a desired revision.
 * - `netfleet_rollout_hosts_at_desired`: of those, hosts whose last report is
 *   the desired revision and hash, applied (not rolled back).
 * - `netfleet_rollout_hosts_failed`: hosts whose last report has a failed
 *   resource or was rolled back.
 * - `netfleet_host_desired_revision{host}`, `netfleet_host_applied_revision{host}`:
 *   per host (absent: none); `netfleet_host_corrective_changes{host}`: the
 *   drift repairs in its corrective history.
 * - `netfleet_status_read_duration_seconds`, `netfleet_status_read_errors_total`:
 *   the last read of those rows, and reads that failed or took over
 *   STATUS_READ_TIMEOUT_MS (the gauges then keep the last rows read).
 * - `netfleet_nats_reconnects_total`: reconnects of serve's control-plane connection.
 * - prom-client's process and Node.js default metrics unless `defaultMetrics: false`.
 */
export class ServeMetrics {
  readonly registry = new Registry();
  readonly reconnects: Counter;
  private readonly source: StatusSource;
  private readonly hosts: Gauge<"state">;
  private readonly desired: Gauge;
  private readonly atDesired: Gauge;
  private readonly failed: Gauge;
  private readonly hostDesired: Gauge<"host">;
  private readonly hostApplied: Gauge<"host">;
  private readonly hostCorrective: Gauge<"host">;
  private readonly readDuration: Gauge;
  private readonly readErrors: Counter;
  private reading: Promise<void> | undefined;

  constructor(source: StatusSource, o: { defaultMetrics?: boolean } = {}) {
    this.source = source;
    const registers = [this.registry];
    this.hosts = new Gauge({ name: "netfleet_hosts", help: "Hosts by enrollment state (unenrolled: an inventory host that never enrolled).", labelNames: ["state"], registers });
    this.desired = new Gauge({ name: "netfleet_rollout_hosts_desired", help: "Hosts with a desired revision.", registers });
    this.atDesired = new Gauge({ name: "netfleet_rollout_hosts_at_desired", help: "Hosts whose last report applied the desired revision and hash (not rolled back).", registers });
    this.failed = new Gauge({ name: "netfleet_rollout_hosts_failed", help: "Hosts whose last report has a failed resource or was rolled back.", registers });
    this.hostDesired = new Gauge({ name: "netfleet_host_desired_revision", help: "The host's desired revision.", labelNames: ["host"], registers });
    this.hostApplied = new Gauge({ name: "netfleet_host_applied_revision", help: "The revision of the host's last report.", labelNames: ["host"], registers });
    this.hostCorrective = new Gauge({ name: "netfleet_host_corrective_changes", help: "Drift repairs in the host's corrective history.", labelNames: ["host"], registers });
    this.readDuration = new Gauge({ name: "netfleet_status_read_duration_seconds", help: "How long the last read of the hosts' status took.", registers });
    this.readErrors = new Counter({ name: "netfleet_status_read_errors_total", help: "Reads of the hosts' status that failed or timed out (the rollout gauges keep the last read).", registers });
    this.reconnects = new Counter({ name: "netfleet_nats_reconnects_total", help: "Reconnects of serve's control-plane NATS connection.", registers });
    if (o.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Sets the rollout gauges from status rows (what each scrape does with a fresh read). */
  update(rows: readonly HostStatus[]): void {
    this.hosts.reset();
    for (const state of ["approved", "quarantined", "rejected", "unenrolled"]) this.hosts.set({ state }, 0);
    for (const r of rows) this.hosts.inc({ state: r.state });
    const desired = rows.filter((r) => r.desired !== null);
    this.desired.set(desired.length);
    this.atDesired.set(desired.filter((r) => !r.drift && r.applied !== null && !r.applied.rolledBack).length);
    this.failed.set(rows.filter((r) => (r.summary?.failed ?? 0) > 0 || r.applied?.rolledBack === true).length);
    for (const g of [this.hostDesired, this.hostApplied, this.hostCorrective]) g.reset();
    for (const r of rows) {
      if (r.desired) this.hostDesired.set({ host: r.host }, r.desired.revision);
      if (r.applied) this.hostApplied.set({ host: r.host }, r.applied.revision);
      this.hostCorrective.set({ host: r.host }, r.corrective.count);
    }
  }

  /** Reads the status rows (bounded by STATUS_READ_TIMEOUT_MS) and serves every metric as Prometheus text. */
  async page(): Promise<{ contentType: string; body: string }> {
    this.reading ??= this.refresh().finally(() => (this.reading = undefined));
    await this.reading;
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private async refresh(): Promise<void> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`status read took over ${STATUS_READ_TIMEOUT_MS} ms`)), STATUS_READ_TIMEOUT_MS);
    });
    try {
      this.update(await Promise.race([this.source(), timeout]));
    } catch {
      this.readErrors.inc();
    } finally {
      clearTimeout(timer);
      this.readDuration.set((performance.now() - started) / 1000);
    }
  }
}
