/**
 * Enrollment and listing benchmark: N simulated agents (rollout-agents.ts
 * processes: the real NatsAgent on a simulated host) enroll with host tokens
 * against a real nats-server on loopback, the controller service
 * (ControlPlane.serve: enrollment, user sync with server reloads) in this
 * process. Then `netfleet status` and `netfleet hosts` are run over the N
 * hosts as the CLI runs them: a fresh connection (ControlPlane.connect), the
 * command with --json, the connection closed.
 *
 *   sh scripts/node.sh test/bench/enroll.ts N   (one row, as JSON)
 *
 * Figures: enrollMs, the agents' first start to every agent welcomed and
 * connected as itself; the controller service's CPU over it (this process:
 * little else runs here meanwhile) and nats-server's (from /proc); how many
 * user syncs (server reloads) it took. statusMs: `status --json
 * --no-counters`; statusCountersMs: `status --json` (each approved agent
 * asked for its counters); hostsMs: `hosts --json`. The load average at the
 * start is in the row: on a shared machine the figures are only as quiet as it.
 *
 * Everything it starts it stops; every wait is bounded.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey } from "@netfleet/controller";
import { enrollSubject, generateSigningKeys, type Host } from "@netfleet/shared";
import { hostsCommand, statusCommand } from "../../packages/controller/src/commands/hosts.ts";
import type { NatsUser } from "../../packages/controller/src/nats/config.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { inventoryHost } from "../nats/harness.ts";
import { benchPort } from "./fleet-ports.ts";
import type { AgentsArgs } from "./rollout-agents.ts";
import { procCpuMs, simulatorNodeFlags, SITE, spawnChild, stopChild, TOKEN, writeTokens, type Child } from "./rollout.ts";

export interface EnrollRow {
  agents: number;
  /** The agents' first start to every agent welcomed and connected with its own user (ms). */
  enrollMs: number;
  /** agents / enrollMs, per second. */
  perSecond: number;
  /** CPU of the controller service over the enrollment (ms, user + system). */
  controllerCpuMs: number;
  /** CPU of nats-server over the enrollment (ms, user + system, /proc/PID/stat). */
  natsCpuMs: number;
  /** User syncs (user list written, servers reloaded) over the enrollment, and their total time (ms). */
  reloads: number;
  reloadMs: number;
  /** `status --json --no-counters`: connect, read, render, close (ms). */
  statusMs: number;
  /** `status --json` with every approved agent asked for its counters (ms). */
  statusCountersMs: number;
  /** Status rows with a counters summary (the agents that answered in time). */
  countersAnswered: number;
  /** `hosts --json` (ms). */
  hostsMs: number;
  /** Rows status and hosts printed (each must be N). */
  statusRows: number;
  hostsRows: number;
  /** os.loadavg() at the start: the other work on the machine. */
  load: number[];
  error?: string;
}

export interface EnrollBenchOptions {
  /** Agents per agent process (default 5,000: two processes for 10,000). */
  perProcess?: number;
  /** Agents starting (enrolling) at once per process (default 1,000). */
  concurrency?: number;
  /** Skip `status` with counters (at 10,000 agents it asks every agent). */
  skipCounters?: boolean;
}

const HERE = import.meta.dirname;

/** user + system CPU of a process, ms (rollout.ts procCpuMs; status.ts takes it from here). */
export { procCpuMs };

/** Starts the V8 CPU profiler in this process; the function returned stops it and writes the profile to a file. */
async function startProfile(): Promise<(file: string) => Promise<void>> {
  const { Session } = await import("node:inspector/promises");
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.start");
  return async (file) => {
    const { profile } = await session.post("Profiler.stop");
    await writeFile(file, JSON.stringify(profile));
    session.disconnect();
  };
}

/** How long `f` took, ms. */
async function timed<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const v = await f();
  return [Math.round(performance.now() - t), v];
}

export async function enrollBench(agents: number, log: (line: string) => void, options: EnrollBenchOptions = {}): Promise<EnrollRow> {
  const load = loadavg().map((l) => Math.round(l * 100) / 100);
  const root = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const dir = await mkdtemp(join(root, "nf-enroll-bench-"));
  const names = Array.from({ length: agents }, (_, i) => `hv${i + 1}`);
  const hosts: Host[] = names.map((h) => inventoryHost(h));
  const password = randomBytes(18).toString("base64url");
  const enrollPassword = randomBytes(18).toString("base64url");
  const signing = generateSigningKeys();
  const children: Child[] = [];
  let server: NatsServer | undefined;
  let service: ControlPlane | undefined;
  try {
    server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort: await benchPort(0), users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)] });
    const nats = server;
    let reloads = 0;
    let reloadMs = 0;
    const directory = {
      async setUsers(users: NatsUser[]) {
        const t = performance.now();
        await nats.setUsers(users);
        reloads++;
        reloadMs += performance.now() - t;
      },
    };
    const base = { site: SITE, servers: server.urls, user: "controller", password, hosts, enrollmentToken: TOKEN, enrollmentPassword: enrollPassword, signing, credentialsDir: join(dir, "credentials") };
    // When the service approved each host, and what else it logged (counted).
    const approvedAt: number[] = [];
    const events: Record<string, number> = {};
    const serviceLog = (e: Record<string, unknown>) => {
      const k = String(e.event);
      events[k] = (events[k] ?? 0) + 1;
      if (k === "approved") approvedAt.push(performance.now());
      if (k === "handler-error" && events[k]! <= 3) log(`service: ${JSON.stringify(e)}`);
    };
    service = await ControlPlane.connect({ ...base, userDirectory: directory, log: serviceLog });
    await service.serve();
    const key = await hostTokenKey(join(dir, "credentials"));
    const tokens = Object.fromEntries(names.map((host) => [host, mintHostTokenWithKey(key, { site: SITE, enrollPassword, host }).token]));

    // On the wire: each host's first enroll message (from the enrollment user) and its next one (the agent
    // announcing itself on its own connection, agent.ts attach): the enrollment proper lies between the first
    // message of all and the last host's announcement.
    const firstMsg = new Map<string, number>();
    const announced = new Map<string, number>();
    const wire = service.nc.subscribe(enrollSubject(SITE, "*"));
    void (async () => {
      for await (const m of wire) {
        const host = m.subject.slice(m.subject.lastIndexOf(".") + 1);
        if (!firstMsg.has(host)) firstMsg.set(host, performance.now());
        else if (!announced.has(host)) announced.set(host, performance.now());
      }
    })();
    reloads = 0;
    reloadMs = 0;
    const natsPid = server.nodes[0]!.process?.pid;
    const profiler = process.env.NF_BENCH_PROF_DIR ? await startProfile() : undefined;
    const cpu0 = process.cpuUsage();
    const nats0 = procCpuMs(natsPid);
    const t = performance.now();
    const perProcess = options.perProcess ?? 5000;
    const parts = Math.max(1, Math.ceil(agents / perProcess));
    for (let p = 0; p < parts; p++) {
      const mine = names.filter((_, i) => i % parts === p);
      const arg: AgentsArgs = {
        site: SITE,
        servers: server.urls,
        enrollPassword,
        token: TOKEN,
        tokensFile: await writeTokens(join(dir, `tokens-${p}.json`), mine, tokens),
        names: mine,
        stateRoot: join(dir, "agents"),
        minDelayMs: 5,
        maxDelayMs: 20,
        concurrency: options.concurrency ?? 1000,
      };
      const prof = process.env.NF_BENCH_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.NF_BENCH_PROF_DIR}`] : [];
      children.push(spawnChild(`agents${p}`, join(HERE, "rollout-agents.ts"), JSON.stringify(arg), log, [...simulatorNodeFlags(mine.length), ...prof]));
    }
    const ready = await Promise.all(children.map((c) => c.waitFor("ready", 120_000 + agents * 60)));
    const enrollMs = Math.round(performance.now() - t);
    const cpu = process.cpuUsage(cpu0);
    if (profiler) await profiler(join(process.env.NF_BENCH_PROF_DIR!, `controller-enroll-${agents}.cpuprofile`));
    const natsCpuMs = procCpuMs(natsPid) - nats0;
    const agentsCpuMs = children.map((c) => procCpuMs(c.child.pid));
    wire.unsubscribe();
    const t1 = Math.min(...firstMsg.values());
    const q = (xs: number[]) => {
      const v = xs.map((x) => Math.round(x - t1)).sort((a, b) => a - b);
      return v.length ? `${v[0]}/${v[Math.floor(v.length / 2)]}/${v.at(-1)} (${v.length})` : "-";
    };
    log(`enroll ${agents}: from the first enroll message (ms, min/p50/max): first message ${q([...firstMsg.values()])}, approved ${q(approvedAt)}, announced on its own connection ${q([...announced.values()])}; the first message came ${Math.round(t1 - t)} ms after the agent processes were spawned; service events ${JSON.stringify(events)}`);
    const enrolled = ready.reduce((s, r) => s + Number(r.enrolled), 0);
    if (enrolled !== agents) throw new Error(`bench: only ${enrolled} of ${agents} agents enrolled`);
    log(`enroll ${agents}: ${enrollMs} ms, ${reloads} reloads (${Math.round(reloadMs)} ms), controller CPU ${Math.round((cpu.user + cpu.system) / 1000)} ms, nats-server CPU ${natsCpuMs} ms, agent processes CPU ${agentsCpuMs.join(", ")} ms`);

    // The commands as the CLI runs them: connect, run, close.
    const cli = async (run: (cp: ControlPlane) => Promise<unknown>) => {
      const t0 = performance.now();
      const cp = await ControlPlane.connect(base);
      const t1 = performance.now();
      try {
        return await run(cp);
      } finally {
        const t2 = performance.now();
        await cp.close();
        log(`  connect ${Math.round(t1 - t0)} ms, command ${Math.round(t2 - t1)} ms, close ${Math.round(performance.now() - t2)} ms`);
      }
    };
    const rowsOf = (o: ReturnType<typeof memoryOutput>) => ((o.values[0] as { hosts?: unknown[] } | undefined)?.hosts ?? []) as Record<string, unknown>[];
    const statusOut = memoryOutput(true);
    const [statusMs] = await timed(() => cli((cp) => statusCommand(cp, statusOut, { counters: false })));
    const hostsOut = memoryOutput(true);
    const [hostsMs] = await timed(() => cli((cp) => hostsCommand(cp, hostsOut)));
    let statusCountersMs = NaN;
    let countersAnswered = 0;
    if (!options.skipCounters) {
      const out = memoryOutput(true);
      [statusCountersMs] = await timed(() => cli((cp) => statusCommand(cp, out, { counters: true })));
      countersAnswered = rowsOf(out).filter((r) => r.counters).length;
    }
    const row: EnrollRow = {
      agents,
      enrollMs,
      perSecond: Math.round((agents / enrollMs) * 1000),
      controllerCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      natsCpuMs,
      reloads,
      reloadMs: Math.round(reloadMs),
      statusMs,
      statusCountersMs,
      countersAnswered,
      hostsMs,
      statusRows: rowsOf(statusOut).length,
      hostsRows: rowsOf(hostsOut).length,
      load,
    };
    log(`enroll ${agents}: status ${statusMs} ms (${row.statusRows} rows), with counters ${statusCountersMs} ms (${countersAnswered} answered), hosts ${hostsMs} ms (${row.hostsRows} rows)`);
    return row;
  } finally {
    await Promise.all(children.map((c) => stopChild(c, 30_000)));
    for (const c of children) {
      const stopped = c.lines.find((l) => l.event === "stopped");
      if (stopped) log(`${c.name}: agent events ${JSON.stringify(stopped.counts)}`);
    }
    await service?.close().catch(() => {});
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const n = Number(process.argv[2] ?? 1000);
  const row = await enrollBench(n, (l) => process.stderr.write(`[bench] ${l}\n`), { skipCounters: process.argv.includes("--no-counters") });
  process.stdout.write(JSON.stringify(row) + "\n");
}
