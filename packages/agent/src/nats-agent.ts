import { isIpv4, warningsOf, type HostAssignment } from "@netfleet/shared";
import { AgentDaemon } from "./daemon.ts";
import { reconcile, reconcilePass } from "./engine.ts";
import type { Runner } from "./exec/runner.ts";
import type { Toolbox } from "./tools.ts";
import { FleetMember, type FleetMemberOptions } from "./fleet/agent.ts";
import { checkResult, type CheckResult } from "./fleet/check.ts";
import { correctiveChange, fitChanges } from "./fleet/corrective.ts";
import { CorrectiveJournal } from "./fleet/corrective-journal.ts";
import type { HostFacts } from "./fleet/host-facts.ts";
import { passResult, type PassResult } from "./fleet/pass-result.ts";
import { AgentState } from "./fleet/state.ts";
import { AuditCollector, auditSources } from "./gateway/audit-collector.ts";
import { LeaseFollower } from "./gateway/lease-follower.ts";
import { LeasePublisher } from "./gateway/lease-publisher.ts";
import { meteredRunner, type AgentMetrics } from "./metrics.ts";
import { observeHost } from "./show/observe.ts";
import { AGENT_VERSION } from "./version.ts";

/** The fleet agent's settings: how it joins, what it drives, and its timings. */
export interface NatsAgentOptions {
  site: string;
  servers: string[];
  /** The site's join token (`<id>.<secret>`): id = enrollment NATS password, the whole token = approval. */
  enrollment: { password: string; token: string };
  /** The name to enroll as (default: the hostname's first label). */
  name?: string;
  /** Enrollment key, credentials, checkpoint. */
  stateDir: string;
  /** The executor: ExecaRunner on a real host, a fake one in benchmarks and tests. */
  runner: Runner;
  tools: Toolbox;
  /** Full reconcile period (drift check and repair), ms. */
  intervalMs?: number;
  /** VM port rules pass period, ms. */
  flowIntervalMs?: number;
  /** Follow OVS and libvirt events (spawns ovsdb-client / virsh event); off for simulated agents. */
  watchEvents?: boolean;
  gatherFacts?: () => Promise<HostFacts>;
  agentVersion?: string;
  heartbeatMs?: number;
  confirmDeadlineMs?: number;
  resyncMs?: number;
  enrollRetryMs?: number;
  reconnectTimeWaitMs?: number;
  reconnectMaxMs?: number;
  /** Sets the controller's signing key instead of trusting (and pinning) the one in the welcome. */
  signingPublicKeyPem?: string;
  /** How often a backend reads its dnsmasq lease files, ms (default 500). */
  leasePollMs?: number;
  log?: (event: Record<string, unknown>) => void;
  /**
   * Prometheus metrics (metrics.ts): every command the runner runs, each
   * reconcile pass, drift repairs, NATS reconnects. Without it nothing is counted.
   */
  metrics?: AgentMetrics;
}

/**
 * The agent on a host of the fleet: a FleetMember (enrollment, signed
 * desired state, reports, heartbeats, lockout protection; one serial queue)
 * driving the resource engine through AgentDaemon (drift repair every interval and on
 * OVS/libvirt events). Starting converges the host to the last confirmed
 * assignment straight from the checkpoint, before NATS is reachable;
 * losing NATS never tears anything down. A pass that repairs drift outside
 * an apply is reported as corrective.
 *
 * DHCP leases travel alongside: while the assignment holds dnsmasq
 * resources, the agent publishes their leases to its key of the leases
 * bucket (LeasePublisher); while it holds vm-port-policy resources with a
 * `leaseSource`, it keeps `<runDir>/leases/<network>.json` at that
 * backend's published leases and asks the daemon for a ports pass whenever
 * a file changes (LeaseFollower). Both follow the assignment in force and
 * the client's connection, and stop with the agent.
 */
export class NatsAgent {
  /** The fleet side: it calls converge, restore and check here; corrective reports are queued on it. */
  readonly client: FleetMember;
  /** Gateway audit: records of the nft table's audited networks, from their nflog groups to the audit stream (idle without any). */
  readonly audit: AuditCollector;
  /** Backend side of lease distribution (idle without dnsmasq resources). */
  readonly leasePublisher: LeasePublisher;
  /** VM-host side of lease distribution (idle without vm-port-policy resources that name a leaseSource). */
  readonly leaseFollower: LeaseFollower;
  /** This host's corrective history in its key of the corrective bucket (what each drift-repair pass changed back). */
  readonly journal: CorrectiveJournal;
  private readonly options: NatsAgentOptions;
  private readonly log: (event: Record<string, unknown>) => void;
  private daemon: AgentDaemon | undefined;
  private applying = 0;
  private stopped = false;
  private lastFailedSignature = "";
  private lastWarningSignature = "";
  private connections = 0;
  private controllerIps: string[] | undefined;

  constructor(options: NatsAgentOptions) {
    this.log = options.log ?? (() => {});
    // Every command (daemon passes, check mode, the empty-host restore) goes through the one metered runner.
    this.options = options.metrics ? { ...options, runner: meteredRunner(options.runner, options.metrics, this.log) } : options;
    const memberOptions: FleetMemberOptions = {
      site: options.site,
      ...(options.name ? { hostname: options.name } : {}),
      servers: options.servers,
      runDir: options.stateDir,
      enrollment: { user: `enroll-${options.site}`, password: options.enrollment.password, token: options.enrollment.token },
      agentVersion: options.agentVersion ?? AGENT_VERSION,
      onAssignment: (assignment, _revision, o) => (o.expectObserved !== undefined ? this.convergePlan(assignment, o.expectObserved) : this.converge(assignment)),
      rollback: (previous) => this.restore(previous),
      onCheck: (assignment) => this.check(assignment),
      // `netfleet show HOST`: read-only commands through the same (metered) runner.
      onShow: () => observeHost({ ...(this.client.host ? { host: this.client.host } : {}), runner: this.options.runner, tools: this.options.tools }),
      log: this.log,
      ...(options.signingPublicKeyPem ? { signingPublicKeyPem: options.signingPublicKeyPem } : {}),
      ...(options.gatherFacts ? { gatherFacts: options.gatherFacts } : {}),
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
      ...(options.confirmDeadlineMs !== undefined ? { confirmDeadlineMs: options.confirmDeadlineMs } : {}),
      ...(options.resyncMs !== undefined ? { resyncMs: options.resyncMs } : {}),
      ...(options.enrollRetryMs !== undefined ? { enrollRetryMs: options.enrollRetryMs } : {}),
      ...(options.reconnectTimeWaitMs !== undefined ? { reconnectTimeWaitMs: options.reconnectTimeWaitMs } : {}),
      ...(options.reconnectMaxMs !== undefined ? { reconnectMaxMs: options.reconnectMaxMs } : {}),
      onConnection: (nc, fresh) => {
        // fresh=false: nats.js reconnected this connection; fresh after the first: a new one replaced a closed one.
        if (!fresh || this.connections > 0) options.metrics?.reconnects.inc();
        this.connections++;
        this.audit.attach(nc);
        this.leasePublisher.attach(nc, fresh);
        this.leaseFollower.attach(nc, fresh);
        this.journal.attach(nc, fresh);
      },
    };
    this.client = new FleetMember(memberOptions);
    this.audit = new AuditCollector({ site: options.site, host: () => this.client.host, runDir: options.tools.runDir, log: this.log });
    this.leasePublisher = new LeasePublisher({
      site: options.site,
      host: () => this.client.host,
      runDir: options.tools.runDir,
      stateDir: options.tools.stateDir,
      ...(options.leasePollMs !== undefined ? { pollMs: options.leasePollMs } : {}),
      log: this.log,
    });
    this.journal = new CorrectiveJournal({ site: options.site, host: () => this.client.host, log: this.log });
    this.leaseFollower = new LeaseFollower({
      site: options.site,
      runDir: options.tools.runDir,
      onChange: (networks) => {
        const daemon = this.daemon;
        if (!daemon || this.stopped) return;
        this.log({ event: "leases-changed", networks, pass: "ports" });
        void daemon.request("ports").catch((err: unknown) => this.log({ event: "leases-error", error: (err as Error).message }));
      },
      log: this.log,
    });
  }

  /** The assignment the daemon keeps the host at (undefined before the first one). */
  get assignment(): { host: string; hash: string } | undefined {
    return this.daemon?.status();
  }

  /**
   * Converges to the checkpointed assignment (no NATS needed), then starts
   * the client; resolves once connected with the agent's own credentials
   * (enrollment may wait for an operator's approval) or when stopped.
   */
  async start(): Promise<void> {
    const checkpoint = await new AgentState(this.options.stateDir).checkpoint();
    if (checkpoint.current) {
      this.log({ event: "resume", revision: checkpoint.current.revision, hash: checkpoint.current.assignment.hash });
      await this.startDaemon(checkpoint.current.assignment);
    }
    await this.client.start();
  }

  /** Stops drift repair and closes the connection; the host stays as it is. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.audit.stop();
    await this.leasePublisher.stop();
    await this.leaseFollower.stop();
    await this.client.stop();
    await this.daemon?.stop();
    await this.journal.stop();
  }

  /** Points lease publishing and following at what this assignment holds (undefined: nothing). */
  private configureLeases(assignment: HostAssignment | undefined): void {
    const resources = assignment?.resources ?? [];
    this.leasePublisher.configure(resources.flatMap((r) => (r.kind === "dnsmasq" ? [r.name] : [])));
    this.audit.configure(auditSources(resources));
    const sources = new Map<string, string[]>();
    for (const r of resources) {
      if (r.kind !== "vm-port-policy" || !r.leaseSource) continue;
      sources.set(r.leaseSource, [...(sources.get(r.leaseSource) ?? []), r.network]);
    }
    this.leaseFollower.configure(sources);
  }

  private async startDaemon(assignment: HostAssignment): Promise<void> {
    const o = this.options;
    this.configureLeases(assignment);
    this.daemon = new AgentDaemon(assignment, {
      runner: o.runner,
      tools: o.tools,
      intervalMs: o.intervalMs ?? 30_000,
      flowIntervalMs: o.flowIntervalMs ?? 2000,
      watchEvents: o.watchEvents ?? true,
      controllers: this.controllers(),
      log: (event) => this.onDaemonEvent(event),
      ...(o.metrics ? { metrics: o.metrics } : {}),
    });
    this.applying++;
    try {
      await this.daemon.start();
    } finally {
      this.applying--;
    }
  }

  /**
   * The IPv4 addresses of the NATS servers this agent was given
   * (`nats://10.10.0.10:4222` -> `10.10.0.10`; names are left out): the
   * management guard keeps the links of the routes towards them. Parsed
   * once (the servers never change for an agent; a URL parse per pass cost
   * some 17 us of each apply of a 2,000-agent bench), a fresh copy per call.
   */
  private controllers(): string[] {
    this.controllerIps ??= this.options.servers.flatMap((url) => {
      try {
        const host = new URL(url).hostname;
        return isIpv4(host) ? [host] : [];
      } catch {
        return [];
      }
    });
    return [...this.controllerIps];
  }

  /** Converges to an assignment (called on the fleet member's serial queue, so never beside restore). */
  private async converge(assignment: HostAssignment): Promise<PassResult> {
    if (this.stopped) throw new Error("agent is stopping");
    if (!this.daemon) await this.startDaemon(assignment);
    else {
      this.applying++;
      try {
        this.configureLeases(assignment);
        await this.daemon.replace(assignment);
      } finally {
        this.applying--;
      }
    }
    const pass = passResult(this.daemon!.lastResults);
    this.lastFailedSignature = failedSignature(pass);
    this.lastWarningSignature = warningSignature(pass);
    return pass;
  }

  /**
   * Converges to the assignment of a saved plan (`netfleet rollout --plan`):
   * its pass runs only if the host's observed-state hash is still
   * `expectObserved` (engine expectObserved). Refused, nothing ran, the
   * pass (the engine's failed `plan` result) is what is reported, and the
   * assignment in force stays (with none, no daemon starts), so later
   * drift-repair passes never apply the refused one unchecked. Only this
   * pass is checked: the plan changes the host, by design.
   */
  private async convergePlan(assignment: HostAssignment, expectObserved: string): Promise<PassResult> {
    if (this.stopped) throw new Error("agent is stopping");
    let pass: PassResult;
    this.applying++;
    try {
      if (this.daemon) {
        const taken = await this.daemon.replace(assignment, { expectObserved });
        pass = passResult(this.daemon.lastResults);
        if (taken) this.configureLeases(assignment);
      } else {
        const o = this.options;
        const outcome = await reconcilePass(assignment.resources, { runner: o.runner, tools: o.tools, owner: assignment.site, controllers: this.controllers(), expectObserved });
        pass = passResult(outcome.results);
        // The plan's pass ran: the daemon takes over (its first passes find the host converged).
        if (outcome.observed === expectObserved) await this.startDaemon(assignment);
      }
    } finally {
      this.applying--;
    }
    this.lastFailedSignature = failedSignature(pass);
    this.lastWarningSignature = warningSignature(pass);
    return pass;
  }

  /** Lockout protection: back to the previous assignment; with none, remove what netfleet owns here. */
  private async restore(previous: HostAssignment | undefined): Promise<PassResult> {
    if (previous) return this.converge(previous);
    const current = this.daemon?.status();
    await this.daemon?.stop();
    this.daemon = undefined;
    this.configureLeases(undefined);
    const results = await reconcile(
      [{ kind: "prune", name: "host", keep: { links: [], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false } }],
      { runner: this.options.runner, tools: this.options.tools, owner: this.options.site, controllers: this.controllers() },
    );
    this.log({ event: "restored-empty", undone: current?.hash });
    return passResult(results);
  }

  private async check(assignment: HostAssignment): Promise<CheckResult> {
    const { results, observed } = await reconcilePass(assignment.resources, { runner: this.options.runner, tools: this.options.tools, owner: assignment.site, check: true, controllers: this.controllers() });
    return checkResult(results, observed);
  }

  /**
   * Daemon passes outside an apply that changed something (drift repaired),
   * or whose failures or warnings (warningsOf) changed, are reported. A
   * repair is reported with what each resource had and has again, and
   * appended to the host's corrective history (CorrectiveJournal).
   */
  private onDaemonEvent(event: Record<string, unknown>): void {
    this.log(event);
    // A quiet partial pass (logged at debug) changed and failed nothing: nothing to report.
    if (event.event !== "reconcile" || event.level === "debug" || this.applying > 0 || this.stopped || !this.daemon) return;
    const corrective = Array.isArray(event.corrective) ? (event.corrective as string[]) : [];
    const pass = passResult(this.daemon.lastResults);
    const signature = failedSignature(pass);
    const warnings = warningSignature(pass);
    if (corrective.length === 0 && signature === this.lastFailedSignature && warnings === this.lastWarningSignature) return;
    this.lastFailedSignature = signature;
    this.lastWarningSignature = warnings;
    // The pass that logged this event has just set lastResults: the repaired resources' results carry their changes.
    const at = new Date().toISOString();
    const ids = new Set(corrective);
    const correctiveChanges = this.daemon.lastResults.filter((r) => ids.has(r.id)).map((r) => correctiveChange(r, at));
    if (corrective.length > 0) {
      this.options.metrics?.repaired(corrective);
      this.log({ event: "drift-repaired", corrective });
      this.journal.record(correctiveChanges);
    }
    void this.client.report(pass, { corrective, correctiveChanges: fitChanges(correctiveChanges) });
  }
}

/** The warnings of a pass as one string; "" when there are none (like failedSignature, and its start value). */
function warningSignature(pass: PassResult): string {
  const warnings = warningsOf(pass.results);
  return warnings.length > 0 ? JSON.stringify(warnings) : "";
}

function failedSignature(pass: PassResult): string {
  return pass.results.filter((r) => r.result === false).map((r) => r.id).join(",");
}
