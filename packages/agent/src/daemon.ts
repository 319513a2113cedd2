import { execa, type ResultPromise } from "execa";
import type { HostAssignment, ResourceSpec } from "@netfleet/shared";
import { reconcilePass, summarize } from "./engine.ts";
import type { Runner } from "./exec/runner.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { ResourceResult } from "./resources/types.ts";
import { DnsmasqWatch } from "./gateway/dnsmasq-watch.ts";
import type { Toolbox } from "./tools.ts";

/** How the daemon runs commands and how often it passes. */
export interface DaemonOptions {
  runner: Runner;
  tools: Toolbox;
  /** Full reconcile period (drift repair). */
  intervalMs: number;
  /** VM port rules are checked this often too: they vanish when ovs-vswitchd restarts. */
  flowIntervalMs: number;
  /** Follow OVS Interface changes and libvirt domain events. */
  watchEvents: boolean;
  log: (event: Record<string, unknown>) => void;
  /** Each pass's duration and failures are counted here (metrics.ts). */
  metrics?: AgentMetrics;
  /**
   * Controller addresses (IPv4): the management guard also refuses to enslave
   * the link of the route towards them (fleet mode: its NATS servers).
   */
  controllers?: readonly string[];
}

/**
 * Resource kinds a VM port event (a port appeared, went away or was replugged)
 * re-plans: they find VM ports live by libvirt's `external_ids:attached-mac`.
 * ovs-mirror is among them: a Mirror's select and output ports are weak
 * references (ovs-vswitchd.conf.db(5)) that a replugged tap loses, and a VM
 * started after the rollout must be selected (mirror.test.ts's port row).
 */
const PORT_KINDS: readonly string[] = ["vm-port-policy", "ovs-mirror"];

/** `ports`: the VM port rules only; `dnsmasq`: the dnsmasq resources only (one exited: DnsmasqWatch). */
export type PassKind = "full" | "ports" | "dnsmasq";

/**
 * Keeps a host converged: a full pass at start and every interval, and a
 * pass over the VM port rules whenever OVS or libvirt report a change (a
 * domain started, stopped or migrated in; a port appeared or went away;
 * ovs-vswitchd restarted). Stopping the daemon never undoes anything.
 */
export class AgentDaemon {
  private assignment: HostAssignment;
  private readonly options: DaemonOptions;
  private readonly watchers: ResultPromise[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private running: Promise<void> = Promise.resolve();
  private pending = new Set<PassKind>();
  private debounce: NodeJS.Timeout | undefined;
  private stopped = false;
  private dnsmasqWatch: DnsmasqWatch | undefined;
  /** What handlers learnt of the host in earlier passes (ObserveContext.carry). */
  private readonly carry = new Map<string, unknown>();
  /** start() has run (replace() before it only sets the assignment start() will use). */
  private started = false;
  lastResults: ResourceResult[] = [];
  passes = 0;

  constructor(assignment: HostAssignment, options: DaemonOptions) {
    this.assignment = assignment;
    this.options = options;
  }

  /**
   * First the VM port rules alone (they need only OVS: at boot libvirtd is
   * ordered after the agent), logged as `ports-ready`; then a full pass.
   * A host whose assignment has no such rule skips that first pass (and the
   * periodic one while it has none): an empty pass is a pass for nothing,
   * and 5,000 agents in one process did 10,000 passes for 5,000 applies.
   */
  async start(): Promise<void> {
    this.started = true;
    if (this.hasPortKinds()) await this.request("ports");
    this.options.log({ event: "ports-ready", host: this.assignment.host, hash: this.assignment.hash });
    await this.request("full");
    this.timers.push(setInterval(() => void this.request("full"), this.options.intervalMs));
    this.timers.push(
      setInterval(() => {
        if (this.hasPortKinds()) void this.request("ports");
      }, this.options.flowIntervalMs),
    );
    if (this.options.watchEvents) this.watch();
    this.startDnsmasqWatch();
  }

  /** Whether the assignment in force holds a resource a "ports" pass re-plans (PORT_KINDS). */
  private hasPortKinds(): boolean {
    return this.assignment.resources.some((r) => PORT_KINDS.includes(r.kind));
  }

  /**
   * Watches this host's dnsmasq instances (DnsmasqWatch, a 250 ms look)
   * from the first assignment that holds a dnsmasq resource on: a host
   * without one has nothing to watch, and its timer firing 4 times a second
   * is all it would do. Once started it runs until the daemon stops.
   */
  private startDnsmasqWatch(): void {
    if (this.dnsmasqWatch || this.stopped || !this.assignment.resources.some((r) => r.kind === "dnsmasq")) return;
    this.dnsmasqWatch = new DnsmasqWatch({
      tools: this.options.tools,
      networks: () => this.assignment.resources.filter((r) => r.kind === "dnsmasq").map((r) => r.name),
      onExit: () => void this.request("dnsmasq"),
      log: this.options.log,
    });
    this.dnsmasqWatch.start();
  }

  /** Whether a DnsmasqWatch runs (for tests and status). */
  get watchingDnsmasq(): boolean {
    return this.dnsmasqWatch !== undefined;
  }

  /**
   * A new desired state (from a file or the control plane): converge to it
   * at once. With `expectObserved` (a saved plan, engine expectObserved) the
   * full pass runs only if the host's observed-state hash is still that one;
   * refused, nothing ran, `lastResults` is the engine's failed `plan`
   * result, and the assignment in force stays what it was (later passes
   * keep converging that one, never the refused one unchecked). Resolves
   * true when the assignment was taken.
   */
  async replace(assignment: HostAssignment, o: { expectObserved?: string } = {}): Promise<boolean> {
    const expect = o.expectObserved;
    if (expect === undefined) {
      this.assignment = assignment;
      await this.request("full");
      if (this.started) this.startDnsmasqWatch();
      return true;
    }
    let taken = false;
    this.running = this.running.then(async () => {
      if (this.stopped) return;
      const previous = this.assignment;
      this.assignment = assignment;
      taken = (await this.pass(["full"], expect)) === expect;
      if (!taken) this.assignment = previous;
    });
    await this.running;
    if (taken && this.started) this.startDnsmasqWatch();
    return taken;
  }

  /** Queues a pass; passes never overlap, a full pass covers the others, and partial ones queued together run as one. */
  request(kind: PassKind): Promise<void> {
    this.pending.add(kind);
    this.running = this.running.then(async () => {
      const next: PassKind[] = this.pending.has("full") ? ["full"] : [...this.pending].sort();
      this.pending.clear();
      if (next.length > 0 && !this.stopped) await this.pass(next);
    });
    return this.running;
  }

  /** Runs one pass; resolves with the observed-state hash it planned on. A "ports" pass re-plans PORT_KINDS. */
  private async pass(kinds: PassKind[], expectObserved?: string): Promise<string> {
    const kind = kinds.join("+");
    const only = new Set<string>(kinds.flatMap((k) => (k === "ports" ? PORT_KINDS : [k])));
    const resources: ResourceSpec[] = kind === "full" ? this.assignment.resources : this.assignment.resources.filter((r) => only.has(r.kind));
    const started = performance.now();
    const { results, observed } = await reconcilePass(resources, {
      runner: this.options.runner,
      tools: this.options.tools,
      owner: this.assignment.site,
      carry: this.carry,
      ...(this.options.controllers ? { controllers: this.options.controllers } : {}),
      ...(expectObserved !== undefined ? { expectObserved } : {}),
    });
    this.passes++;
    if (kind === "full") this.lastResults = results;
    else {
      const byId = new Map(results.map((r) => [r.id, r]));
      this.lastResults = this.lastResults.map((r) => byId.get(r.id) ?? r);
    }
    const summary = summarize(results);
    const ms = performance.now() - started;
    this.options.metrics?.pass(kind, ms / 1000, summary.failed);
    if (kind !== "full" && summary.changed === 0 && summary.failed === 0) {
      // A quiet partial pass (every --flow-interval): only at debug.
      this.options.log({ event: "reconcile", level: "debug", pass: kind, host: this.assignment.host, hash: this.assignment.hash, ...summary, ms: Math.round(ms) });
    } else {
      this.options.log({
        event: "reconcile",
        pass: kind,
        host: this.assignment.host,
        hash: this.assignment.hash,
        ...summary,
        ms: Math.round(ms),
        // A VM starting or stopping (or a lease) is lifecycle, not drift: not corrective.
        ...(results.some((r) => r.changed && !r.lifecycle) ? { corrective: results.filter((r) => r.changed && !r.lifecycle).map((r) => r.id) } : {}),
        ...(results.some((r) => r.changed && r.lifecycle) ? { lifecycle: results.filter((r) => r.changed && r.lifecycle).map((r) => r.id) } : {}),
        ...(summary.failed > 0 ? { failures: results.filter((r) => r.result === false).map((r) => ({ id: r.id, error: r.error ?? r.comment })) } : {}),
      });
    }
    return observed;
  }

  private schedule(kind: PassKind): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.request(kind), 50);
  }

  private watch(): void {
    const { tools } = this.options;
    const db = tools.paths.ovsDb ? `unix:${tools.paths.ovsDb}` : "unix:/run/openvswitch/db.sock";
    this.spawnWatcher(["ovsdb-client", "monitor", db, "Open_vSwitch", "Interface", "name,ofport,external_ids", "--format=csv"], "ovs");
    if (this.assignment.resources.some((r) => r.kind === "libvirt-network")) {
      this.spawnWatcher(tools.virsh("event", "--all", "--loop"), "libvirt");
    }
  }

  /** A watcher that dies (ovsdb-server restarted, libvirtd restarted) is started again after a pause. */
  private spawnWatcher(argv: string[], name: string): void {
    if (this.stopped) return;
    const [file, ...args] = argv;
    const child = execa(file!, args, { reject: false, buffer: false, stdin: "ignore", stderr: "ignore" });
    this.watchers.push(child);
    child.stdout?.on("data", () => this.schedule("ports"));
    void child.then(() => {
      const i = this.watchers.indexOf(child);
      if (i >= 0) this.watchers.splice(i, 1);
      if (!this.stopped) {
        this.options.log({ event: "watcher-exit", watcher: name });
        this.timers.push(setTimeout(() => this.spawnWatcher(argv, name), 1000));
        this.schedule("ports");
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.debounce);
    for (const t of this.timers) clearTimeout(t);
    for (const w of this.watchers) w.kill("SIGTERM");
    await this.dnsmasqWatch?.stop();
    await Promise.allSettled(this.watchers);
    await this.running;
  }

  status(): { host: string; hash: string; passes: number; results: { id: string; result: boolean | null }[] } {
    return {
      host: this.assignment.host,
      hash: this.assignment.hash,
      passes: this.passes,
      results: this.lastResults.map((r) => ({ id: r.id, result: r.result })),
    };
  }
}
