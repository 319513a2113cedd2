/**
 * Server-restart benchmark: N simulated agents (rollout-agents.ts processes:
 * the real NatsAgent on a simulated host) enrolled and connected to a real
 * nats-server on loopback, with the controller service (ControlPlane.serve)
 * in this process. The server is SIGKILLed, started again on the same store
 * after `downMs`, and each agent's return (its connection reconnected, or a
 * new one set up) is timed from the moment the restarted server answers.
 * Agents reconnect on their own schedule (connection.ts Backoff: 250 ms
 * doubling per dial to a 5 s cap, jittered), so every agent should be back
 * within about the cap of the server's return, spread by the jitter.
 *
 *   sh scripts/node.sh test/bench/restart.ts N [downMs] [sample] [--during-wave W]   (one row, as JSON)
 *
 * --during-wave W (RestartBenchOptions.duringWave): the kill comes 500 ms
 * into wave W of a rollout of every host, so the row also says how that
 * rollout ended (result, failed, reverted, the reasons) and how many agents
 * rolled back: a reconnect regression shows up as a number (issue 18 point 6).
 *
 * Measured on 2 shared cores, server down 1 s (each agent's return after the
 * restarted server answered): 1,000 agents 0.26-2.18 s; 2,500 agents
 * -0.08-1.89 s; 5,000 agents 1.76-7.90 s (p50 4.7 s; the server answered
 * 2.7 s after the kill; the two agent processes are CPU-bound while 5,000
 * connections come back and resync, which delays their own timestamps);
 * in every run 0 connections lost for good, 0 rollbacks, every host still
 * approved, the sample's desired and applied revisions intact.
 * Session 26, load 10-50 (other work on the machine): idle, 5,000 agents all back
 * 3.7-17.0 s after the server answered, 2,996 connections lost for good; during
 * wave 2, connection-lost 43,321 times, all "Authentication Timeout" (the CONNECT
 * came after nats-server's auth timeout; nats.js gives up after two alike), the
 * rollout failed (that run's CLI misread its arguments: downMs NaN). With the
 * arguments read right (load 27-34): killed 500 ms into wave 2, down 1.0 s, the
 * rollout succeeded 5,000/5,000, every agent back 5.8-29.5 s after the server
 * answered (p50 10.0 s), 0 lost for good, but 14 agents rolled the revision back
 * (lockout: their confirmation timed out) while the rollout counted them ok.
 * The row's agentEvents and errorSamples say why.
 *
 * Everything it starts it stops; every wait is bounded.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ControlPlane, NatsServer, Rollout, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { generateSigningKeys, sealAssignment, type Host } from "@netfleet/shared";
import { inventoryHost } from "../nats/harness.ts";
import type { AgentsArgs } from "./rollout-agents.ts";
import { benchPort } from "./fleet-ports.ts";
import { simulatorNodeFlags, spawnChild, stopChild, writeTokens, type Child } from "./rollout.ts";

export interface RestartRow {
  agents: number;
  /** How long the server was down: SIGKILL to the restart's launch (ms). */
  downMs: number;
  /** SIGKILL to the restarted server answering (ms). */
  serverBackMs: number;
  /** Per agent, its return after the restarted server answered (ms; negative: it was back before the health check said so). */
  backMinMs: number;
  backP50Ms: number;
  backP99Ms: number;
  backMaxMs: number;
  /** backMaxMs - backMinMs. */
  spreadMs: number;
  /** Agents not back within the bench's wait (60 s). */
  notBack: number;
  /** Connections lost for good and replaced (the agents' `connection-lost` events). */
  lostForGood: number;
  /** Lockout rollbacks (must be 0: nothing was being applied). */
  rollbacks: number;
  /** Informational, before the clock: every agent enrolled and connected. */
  enrollMs: number;
  /** After the restart: hosts whose registry record is still approved (status rows). */
  approvedAfter: number;
  /** Hosts given an assignment before the kill (RestartBenchOptions.sample), and of them those whose desired and applied revision are both still it, not rolled back, after the restart. */
  sample: number;
  sampleIntact: number;
  /** What the agents logged after enrollment, counted by event (connection-lost, reconnected, lockout-rollback, ...). */
  agentEvents?: Record<string, number>;
  /** The first few messages of each error-like event after enrollment (connection-lost: why nats.js closed the connection), "host: message". */
  errorSamples?: Record<string, string[]>;
  /** With RestartBenchOptions.duringWave: the rollout through the restart. */
  rollout?: {
    /** Wave index the kill came in, and ms after that wave started. */
    wave: number;
    killAfterWaveMs: number;
    result: string;
    /** Hosts the rollout counted as failed, reverted, and reported (the new revision applied) by its end. */
    failed: number;
    reverted: number;
    ok: number;
    /** The first few failure reasons (host: reason). */
    reasons: string[];
    /** Rollout start to its end (ms). */
    runMs: number;
  };
  error?: string;
}

export interface RestartBenchOptions {
  /** How long the server stays dead (ms, default 1000). */
  downMs?: number;
  /** nats-server's client port (monitoring on +200); default a free one of fleet-ports.ts (27000-27302). */
  basePort?: number;
  /** Agents per agent process (default 2,500: two processes for 5,000). */
  perProcess?: number;
  /** Hosts given an assignment (and applied) before the kill, checked intact after (default 10; published one by one, about 2 s each at 1,000 agents on 2 cores). */
  sample?: number;
  /**
   * Kill the server in the middle of a rollout instead of while idle: a
   * rollout of every host (four sysctls each; a canary, then 25 % waves) runs
   * in this process on a connection of its own, and the server is SIGKILLed
   * `afterMs` (default 500) after wave `wave` (default 2: the first 25 % wave after the canary) started.
   * The row then says how the rollout ended (RestartRow.rollout).
   */
  duringWave?: { wave?: number; afterMs?: number; applyTimeoutMs?: number };
}

const SITE = "bench";
const TOKEN = "bench-enrollment-token-0123456789";
const HERE = import.meta.dirname;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Asks every agent process when each of its agents last came back. */
async function backTimes(children: Child[], id: number): Promise<{ at: Map<string, number>; lost: number; rollbacks: number }> {
  const at = new Map<string, number>();
  let lost = 0;
  let rollbacks = 0;
  for (const c of children) {
    c.child.stdin!.write(`back ${id}\n`);
    const deadline = Date.now() + 10_000;
    let answer: Record<string, unknown> | undefined;
    while (!(answer = c.lines.find((l) => l.event === "back" && l.id === String(id)))) {
      if (Date.now() > deadline) throw new Error(`${c.name}: no answer to "back ${id}"`);
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const [name, t] of Object.entries(answer.at as Record<string, number>)) at.set(name, t);
    lost += Number(answer.lost);
    rollbacks += Number(answer.rollbacks);
  }
  return { at, lost, rollbacks };
}

export async function restartBench(agents: number, log: (line: string) => void, options: RestartBenchOptions = {}): Promise<RestartRow> {
  const downMs = options.downMs ?? 1000;
  const perProcess = options.perProcess ?? 2500;
  const root = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const dir = await mkdtemp(join(root, "reconnect-bench-"));
  const names = Array.from({ length: agents }, (_, i) => `hv${i + 1}`);
  const hosts: Host[] = names.map((h) => inventoryHost(h));
  const password = randomBytes(18).toString("base64url");
  const enrollPassword = randomBytes(18).toString("base64url");
  const children: Child[] = [];
  let server: NatsServer | undefined;
  let service: ControlPlane | undefined;
  let rolloutCp: ControlPlane | undefined;
  try {
    server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort: options.basePort ?? (await benchPort(22)), users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)] });
    const base = {
      site: SITE,
      servers: server.urls,
      user: "controller",
      password,
      hosts,
      enrollmentToken: TOKEN,
      enrollmentPassword: enrollPassword,
      signing: generateSigningKeys(),
      credentialsDir: join(dir, "credentials"),
    };
    service = await ControlPlane.connect({ ...base, userDirectory: server });
    await service.serve();

    // Host tokens (netfleet hosts token HOST): the site's join token only asks for a pending claim.
    const key = await hostTokenKey(join(dir, "credentials"));
    const tokens = Object.fromEntries(names.map((host) => [host, mintHostTokenWithKey(key, { site: SITE, enrollPassword, host }).token]));
    const t = performance.now();
    const parts = Math.max(1, Math.ceil(agents / perProcess));
    for (let p = 0; p < parts; p++) {
      const mine = names.filter((_, i) => i % parts === p);
      const arg: AgentsArgs = { site: SITE, servers: server.urls, enrollPassword, token: TOKEN, tokensFile: await writeTokens(join(dir, `tokens-${p}.json`), mine, tokens), names: mine, stateRoot: join(dir, "agents"), minDelayMs: 5, maxDelayMs: 20, concurrency: 1000 };
      children.push(spawnChild(`agents${p}`, join(HERE, "rollout-agents.ts"), JSON.stringify(arg), log, [...simulatorNodeFlags(mine.length)]));
    }
    const ready = await Promise.all(children.map((c) => c.waitFor("ready", 60_000 + agents * 60)));
    const enrollMs = Math.round(performance.now() - t);
    const enrolled = ready.reduce((s, r) => s + Number(r.enrolled), 0);
    if (enrolled !== agents) throw new Error(`bench: only ${enrolled} of ${agents} agents enrolled`);
    log(`restart ${agents}: ${agents} agents enrolled in ${enrollMs} ms`);
    const before = await backTimes(children, 0);

    // A sample of hosts holds an applied assignment through the restart.
    const sample = names.slice(0, Math.min(agents, options.sample ?? (options.duringWave ? 0 : 10)));
    const published = new Map<string, number>();
    for (const host of sample) {
      const assignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: [{ kind: "sysctl", name: "net.sim.restart", value: "1" }] });
      published.set(host, (await service.publish(assignment)).revision);
    }
    for (const host of sample) await service.waitForApplied(host, published.get(host)!, 60_000);
    log(`restart ${agents}: ${sample.length} hosts applied an assignment`);

    // Idle: the kill comes now. During a wave: a rollout of every host starts, and the kill comes afterMs into wave `wave`.
    let rolling: Promise<{ done: Extract<RolloutEvent, { event: "done" }> | undefined; runMs: number }> | undefined;
    let killWave = -1;
    let killAfterWaveMs = 0;
    if (options.duringWave) {
      const wantWave = options.duringWave.wave ?? 2;
      const afterMs = options.duringWave.afterMs ?? 500;
      rolloutCp = await ControlPlane.connect(base);
      const cp = rolloutCp;
      let waveStarted: (at: number) => void = () => {};
      const started = new Promise<number>((r) => (waveStarted = r));
      let done: Extract<RolloutEvent, { event: "done" }> | undefined;
      const emit = (e: RolloutEvent) => {
        if (e.event === "wave" && e.index === wantWave) {
          killWave = e.index;
          waveStarted(Date.now());
        }
        if (e.event === "done") done = e;
      };
      const targets: RolloutTarget[] = hosts.map(({ name: host }) => ({
        host,
        role: "vmhost" as const,
        assignment: sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: [1, 2, 3, 4].map((k) => ({ kind: "sysctl" as const, name: `net.wave.k${k}`, value: "1" })) }),
      }));
      const t0 = performance.now();
      rolling = new Rollout(cp, targets, { applyTimeoutMs: options.duringWave.applyTimeoutMs ?? 120_000 }, emit).run().then((o) => ({ done, runMs: Math.round(performance.now() - t0), result: o.result }));
      const waveAt = await Promise.race([started, rolling.then(() => undefined)]);
      if (waveAt === undefined) throw new Error(`bench: the rollout ended before wave ${wantWave} started`);
      await new Promise((r) => setTimeout(r, Math.max(0, waveAt + afterMs - Date.now())));
      killAfterWaveMs = Date.now() - waveAt;
    }
    const killedAt = Date.now();
    await server.kill("nf-1");
    await new Promise((r) => setTimeout(r, Math.max(0, downMs - (Date.now() - killedAt))));
    const launchedAt = Date.now();
    await server.restart("nf-1");
    const serverBackAt = Date.now();
    log(`restart ${agents}: server down ${launchedAt - killedAt} ms, answering again ${serverBackAt - killedAt} ms after the kill${options.duringWave ? ` (killed ${killAfterWaveMs} ms into wave ${killWave})` : ""}`);

    let id = 1;
    let now = await backTimes(children, id++);
    const deadline = Date.now() + 60_000;
    const backCount = () => names.filter((n) => (now.at.get(n) ?? 0) > killedAt).length;
    while (backCount() < agents && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      now = await backTimes(children, id++);
    }
    const back = names.flatMap((n) => {
      const at = now.at.get(n) ?? 0;
      return at > killedAt ? [at - serverBackAt] : [];
    });
    back.sort((a, b) => a - b);
    let rollout: RestartRow["rollout"];
    if (rolling) {
      const r = await rolling;
      const d = r.done;
      rollout = { wave: killWave, killAfterWaveMs, result: d?.result ?? "none", failed: d?.failed.length ?? NaN, reverted: d?.reverted.length ?? NaN, ok: d?.ok.length ?? NaN, reasons: Object.entries(d?.reasons ?? {}).slice(0, 5).map(([h, why]) => `${h}: ${why}`), runMs: r.runMs };
      log(`restart ${agents}: rollout through the restart: ${JSON.stringify(rollout)}`);
      // Rollbacks are counted after the rollout: an agent that could not confirm in time rolls back then.
      now = await backTimes(children, id++);
    }
    const rows = await service.status();
    const approvedAfter = rows.filter((r) => names.includes(r.host) && r.state === "approved").length;
    const sampleIntact = sample.filter((host) => {
      const r = rows.find((x) => x.host === host);
      return r?.desired?.revision === published.get(host) && r?.applied?.revision === published.get(host) && r?.applied?.rolledBack === false;
    }).length;
    const row: RestartRow = {
      agents,
      downMs: launchedAt - killedAt,
      serverBackMs: serverBackAt - killedAt,
      backMinMs: back[0] ?? NaN,
      backP50Ms: back.length ? percentile(back, 50) : NaN,
      backP99Ms: back.length ? percentile(back, 99) : NaN,
      backMaxMs: back.at(-1) ?? NaN,
      spreadMs: back.length ? back.at(-1)! - back[0]! : NaN,
      notBack: agents - back.length,
      lostForGood: now.lost - before.lost,
      rollbacks: now.rollbacks,
      enrollMs,
      approvedAfter,
      sample: sample.length,
      sampleIntact,
      ...(rollout ? { rollout } : {}),
    };
    // The agents' own account (stopped now, before the row is returned): why connections were lost for good.
    await Promise.all(children.map((c) => stopChild(c, 30_000)));
    const agentEvents: Record<string, number> = {};
    const errorSamples: Record<string, string[]> = {};
    for (const c of children) for (const l of c.lines) if (l.event === "stopped") {
      for (const [k, v] of Object.entries(l.counts as Record<string, number>)) agentEvents[k] = (agentEvents[k] ?? 0) + v;
      for (const [k, ss] of Object.entries((l.errorSamples ?? {}) as Record<string, string[]>)) (errorSamples[k] ??= []).push(...ss);
    }
    row.agentEvents = agentEvents;
    row.errorSamples = errorSamples;
    log(`restart ${agents}: agent events ${JSON.stringify(agentEvents)}; e.g. ${JSON.stringify(errorSamples)}`);
    // A histogram by second: the spread of the returns.
    const bySecond = new Map<number, number>();
    for (const b of back) bySecond.set(Math.floor(b / 1000), (bySecond.get(Math.floor(b / 1000)) ?? 0) + 1);
    log(`restart ${agents}: back per second after the server answered: ${[...bySecond].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}s:${n}`).join(" ")}`);
    return row;
  } finally {
    await rolloutCp?.close().catch(() => {});
    await Promise.all(children.map((c) => stopChild(c, 30_000)));
    await service?.close().catch(() => {});
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  // Positionals N [downMs] [sample], in any order with --during-wave W (before, "5000 --during-wave 2" read downMs "--during-wave" as NaN and sample 2).
  let parsed: ReturnType<typeof parseArgs<{ options: { "during-wave": { type: "string" } }; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ options: { "during-wave": { type: "string" } }, allowPositionals: true });
  } catch (err) {
    process.stderr.write(`restart.ts: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const [n, downMs, sample, wave] = [parsed.positionals[0] ?? "1000", parsed.positionals[1] ?? "1000", parsed.positionals[2], parsed.values["during-wave"]].map((v) => (v === undefined ? undefined : Number(v)));
  const bad = ([["N", n], ["downMs", downMs], ["sample", sample], ["--during-wave", wave]] as const).find(([, v]) => v !== undefined && !(Number.isInteger(v) && v >= 0));
  if (bad || !n) {
    process.stderr.write(`restart.ts: ${bad ? `${bad[0]} must be a whole number, not ${String(bad[1])}` : "N must be at least 1"} (usage: restart.ts N [downMs] [sample] [--during-wave W])\n`);
    process.exit(2);
  }
  const row = await restartBench(n, (l) => process.stderr.write(`[bench] ${l}\n`), { downMs: downMs!, ...(sample !== undefined ? { sample } : {}), ...(wave !== undefined ? { duringWave: { wave } } : {}) });
  process.stdout.write(JSON.stringify(row) + "\n");
  // Nothing of the bench is left (restartBench stops what it started); a library handle still open must not keep the CLI up.
  process.exit(0);
}
