import { basename } from "node:path";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { ExecError, type Command, type Runner, type RunResult } from "./exec/runner.ts";

/**
 * Upper bounds (seconds) of the reconcile duration histogram: a ports pass
 * on a quiet host takes tens of ms, a full pass with libvirt and dnsmasq
 * seconds, one stuck on a timeout a minute (the runner's 60 s).
 */
export const RECONCILE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The label value for a program name that is not a plain file name (never expected: argv[0] is one of our tools). */
const OTHER_PROGRAM = "other";

/**
 * The `program` label of a command: the base name of argv[0]
 * (`/usr/bin/ovs-vsctl` → `ovs-vsctl`), never an argument, so the label
 * has as many values as the agent has tools. A name that is not a plain
 * file name (letters, digits, `_ . + -`, up to 64) is `other`.
 */
export function programName(argv: readonly string[]): string {
  const name = basename(argv[0] ?? "");
  return /^[A-Za-z0-9_.+-]{1,64}$/.test(name) ? name : OTHER_PROGRAM;
}

/**
 * The resource kind of a result id (`ovs-bridge[br-secure]` → `ovs-bridge`):
 * the `kind` label of the corrective counter (kinds are few; names are per host).
 */
export function resourceKind(id: string): string {
  const kind = id.split("[")[0] ?? "";
  return /^[a-z0-9-]{1,64}$/.test(kind) ? kind : OTHER_PROGRAM;
}

/**
 * The agent's Prometheus metrics, on a registry of its own (one per agent:
 * tests run several agents in one process). Names follow the Prometheus
 * naming guide: `netfleet_agent_` prefix, base units (seconds), `_total`
 * for counters.
 *
 * - `netfleet_agent_reconcile_duration_seconds{pass}` histogram: each
 *   reconcile pass; `pass` is `full`, `ports`, `dnsmasq` or `dnsmasq+ports`
 *   (daemon.ts PassKind; partial passes queued together run as one).
 * - `netfleet_agent_reconcile_failed_total{pass}`: passes with a failed resource.
 * - `netfleet_agent_last_reconcile_timestamp_seconds`: when the last pass ended (Unix time).
 * - `netfleet_agent_commands_total{program}` / `netfleet_agent_commands_failed_total{program}`:
 *   commands run through the Runner (argv[0]'s base name; in-process steps
 *   such as file writes are not commands); failed = the command could not
 *   start, or exited non-zero where the agent needed it to succeed. A probe
 *   the engine lets fail (`allowFailure`: is there a table, a bridge?) is
 *   run, not failed: an alert on this counter is not woken by them.
 * - `netfleet_agent_corrective_changes_total{kind}`: resources a drift-repair
 *   pass (outside an apply) changed back, by resource kind.
 * - `netfleet_agent_nats_reconnects_total`: connections to NATS after the first
 *   (nats.js reconnects and new connections after one closed).
 * - `netfleet_agent_info{version}` 1, and prom-client's process and Node.js
 *   default metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
 *   `nodejs_eventloop_lag_seconds`, ...) unless `defaultMetrics: false`.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly reconcileDuration: Histogram<"pass">;
  readonly reconcileFailed: Counter<"pass">;
  readonly lastReconcile: Gauge;
  readonly commands: Counter<"program">;
  readonly commandsFailed: Counter<"program">;
  readonly corrective: Counter<"kind">;
  readonly reconnects: Counter;

  constructor(o: { version?: string; defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.reconcileDuration = new Histogram({
      name: "netfleet_agent_reconcile_duration_seconds",
      help: "Duration of each reconcile pass (observe, plan, apply, observe again), by pass kind.",
      labelNames: ["pass"],
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    this.reconcileFailed = new Counter({ name: "netfleet_agent_reconcile_failed_total", help: "Reconcile passes in which a resource failed, by pass kind.", labelNames: ["pass"], registers });
    this.lastReconcile = new Gauge({ name: "netfleet_agent_last_reconcile_timestamp_seconds", help: "When the last reconcile pass ended (Unix time, seconds).", registers });
    this.commands = new Counter({ name: "netfleet_agent_commands_total", help: "Commands run on the host, by program (argv[0] base name).", labelNames: ["program"], registers });
    this.commandsFailed = new Counter({
      name: "netfleet_agent_commands_failed_total",
      help: "Commands that could not start or exited non-zero where success was needed (not probes allowed to fail), by program (argv[0] base name).",
      labelNames: ["program"],
      registers,
    });
    this.corrective = new Counter({
      name: "netfleet_agent_corrective_changes_total",
      help: "Resources changed back by drift repair outside an apply, by resource kind.",
      labelNames: ["kind"],
      registers,
    });
    this.reconnects = new Counter({ name: "netfleet_agent_nats_reconnects_total", help: "Connections to NATS after the first one (reconnects).", registers });
    const info = new Gauge({ name: "netfleet_agent_info", help: "The agent's version (value 1).", labelNames: ["version"], registers });
    if (o.version) info.set({ version: o.version }, 1);
    if (o.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** One reconcile pass of `kind` took `seconds`; `failed`: resources that failed in it. */
  pass(kind: string, seconds: number, failed: number): void {
    this.reconcileDuration.observe({ pass: kind }, seconds);
    if (failed > 0) this.reconcileFailed.inc({ pass: kind });
    this.lastReconcile.set(Date.now() / 1000);
  }

  /** A command ran (`ok`: it did what was needed: started, and exited 0 unless it was allowed to fail). */
  command(argv: readonly string[], ok: boolean): void {
    const program = programName(argv);
    this.commands.inc({ program });
    if (!ok) this.commandsFailed.inc({ program });
  }

  /** Drift repair changed these resources (result ids) back. */
  repaired(ids: readonly string[]): void {
    for (const id of ids) this.corrective.inc({ kind: resourceKind(id) });
  }

  /** The text a scrape gets, and its content type. */
  async page(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * `runner` with each command counted in `metrics` (failed: the runner
 * threw, i.e. it could not start or exited non-zero without
 * `allowFailure`), and, with `log`, one
 * debug line `command` per command: program, argv, exit code, ms; stdin
 * is never logged). Whatever the runner returns or throws is passed on
 * unchanged.
 */
export function meteredRunner(runner: Runner, metrics: AgentMetrics, log?: (event: Record<string, unknown>) => void): Runner {
  return {
    async run(command: Command, options?: { allowFailure?: boolean }): Promise<RunResult> {
      const started = performance.now();
      let exitCode = 127;
      let failed = true;
      try {
        const result = await runner.run(command, options);
        exitCode = result.exitCode;
        failed = false;
        return result;
      } catch (err) {
        if (err instanceof ExecError) exitCode = err.exitCode;
        throw err;
      } finally {
        metrics.command(command.argv, !failed);
        log?.({ event: "command", level: "debug", program: programName(command.argv), argv: command.argv, exitCode, ms: Math.round(performance.now() - started) });
      }
    },
  };
}
