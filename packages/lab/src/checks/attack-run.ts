/**
 * Running the attack tier (attack.ts says what the rows are): one scapy
 * sender per VM namespace, tcpdump captures at the targets started before
 * and stopped after the frames (by pid, bounded), verdicts counted from the
 * captures, rows that change shared state run in separate batches, and the
 * windows (a sender kept running through an event that might open a gap).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import PQueue from "p-queue";
import type { Inventory } from "@netfleet/shared";
import { LabExec, netnsExec, sleep } from "../exec.ts";
import type { LabStatus, LabVm } from "../types.ts";
import { ATTACK_PY, attackProbes, PYTHON, type AttackProbe, type AttackRow, type CapturePoint, type Frame, type Look, type NeighbourWatch, type Sender } from "./attack.ts";

const inNs = netnsExec;

// ---------------------------------------------------------------- running

/** A tcpdump writing inbound frames of one interface to a pcap file. */
interface Capture {
  point: CapturePoint;
  file: string;
  child: ChildProcess;
  stderr: string;
}

/** Bounded waits of the tier (ms). */
export const ATTACK_TIMING = { listen: 5000, settle: 400, stop: 3000 };

/**
 * Starts `tcpdump -i IF -n -U -w FILE -Q in` in the point's namespace and
 * waits (bounded) until it prints "listening on" (tcpdump(1)): frames sent
 * after this resolves are captured. Runs as root (`-Z root`), immediate mode.
 * @throws when tcpdump exits or stays silent for ATTACK_TIMING.listen ms (then it is stopped).
 */
export async function startCapture(point: CapturePoint, file: string, filter?: string, text = false): Promise<Capture> {
  const args = ["-i", point.iface, "-n", "-Q", "in", "--immediate-mode", "-Z", "root", ...(text ? ["-l", "-tt"] : ["-U", "-w", file]), ...(filter ? [filter] : [])];
  const argv = inNs(point.namespace, ["tcpdump", ...args]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", text ? "pipe" : "ignore", "pipe"] });
  const cap: Capture = { point, file, child, stderr: "" };
  child.stderr!.on("data", (d: Buffer) => {
    cap.stderr += d.toString();
  });
  const until = Date.now() + ATTACK_TIMING.listen;
  while (!cap.stderr.includes("listening on")) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > until) {
      await stopProcess(child);
      throw new Error(`tcpdump on ${point.name} (${point.namespace} ${point.iface}) did not start: ${cap.stderr.trim().slice(-300) || "no output"}`);
    }
    await sleep(20);
  }
  return cap;
}

/** Signals a child we started (by its pid) and waits for it to exit; SIGKILL after ATTACK_TIMING.stop ms. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGINT"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, signal);
    } catch {
      /* already gone */
    }
  }
  const t = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }, ATTACK_TIMING.stop);
  await exited;
  clearTimeout(t);
}

/** Frames in a pcap file matching `filter` (`tcpdump -r FILE -nn FILTER`, one line per frame). @throws on a bad filter or file. */
async function countIn(x: LabExec, file: string, filter: string): Promise<number> {
  const r = await x.probe(["tcpdump", "-r", file, "-nn", filter]);
  if (r.exitCode !== 0) throw new Error(`tcpdump -r ${file} '${filter}' exited ${r.exitCode}: ${r.stderr.trim().slice(-200)}`);
  return r.stdout.split("\n").filter((l) => l.trim()).length;
}

/**
 * One `attack.py --serve IFACE` per sender namespace, started on first use
 * and kept for the run (scapy is imported once per namespace, not once per
 * row); requests to one sender are answered in order. `close()` ends every
 * one of them (stdin closed, then SIGTERM by pid).
 */
export class SenderPool {
  private readonly servers = new Map<string, { child: ChildProcess; lines: string[]; waiters: ((line: string) => void)[]; chain: Promise<unknown>; out: string }>();

  private readonly timeoutMs: number;

  /** `timeoutMs`: how long one request (or the start, scapy's import) may take before it is an error. */
  constructor(timeoutMs = 60_000) {
    this.timeoutMs = timeoutMs;
  }

  private async server(s: Sender) {
    const key = `${s.namespace}/${s.iface}`;
    let srv = this.servers.get(key);
    if (srv) return srv;
    const argv = inNs(s.namespace, [PYTHON, ATTACK_PY, "--serve", s.iface]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    const created = { child, lines: [] as string[], waiters: [] as ((line: string) => void)[], chain: Promise.resolve() as Promise<unknown>, out: "" };
    srv = created;
    this.servers.set(key, created);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const w = created.waiters.shift();
        if (w) w(line);
        else created.lines.push(line);
      }
    });
    child.stderr!.on("data", (d: Buffer) => (created.out = (created.out + d.toString()).slice(-2000)));
    child.stdin!.on("error", () => undefined);
    const ready = await this.nextLine(created, s);
    if (ready !== "ready") throw new Error(`attack.py --serve in ${s.namespace} did not start: ${ready} ${created.out.trim().slice(-300)}`);
    return created;
  }

  private nextLine(srv: { child: ChildProcess; lines: string[]; waiters: ((line: string) => void)[]; out: string }, s: Sender): Promise<string> {
    const queued = srv.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`attack.py in ${s.namespace}: no answer within ${this.timeoutMs} ms ${srv.out.trim().slice(-300)}`)), this.timeoutMs);
      const onExit = () => reject(new Error(`attack.py in ${s.namespace} exited: ${srv.out.trim().slice(-300)}`));
      srv.child.once("exit", onExit);
      srv.waiters.push((line) => {
        clearTimeout(t);
        srv.child.off("exit", onExit);
        resolve(line);
      });
    });
  }

  /** Starts the sender's server (scapy imported) without sending anything. */
  async start(s: Sender): Promise<void> {
    await this.server(s);
  }

  /** Sends `frames` from `s`: `count` rounds, `intervalMs` apart. @throws when attack.py reports an error or does not answer. */
  async send(s: Sender, frames: Frame[], count = 2, intervalMs = 30): Promise<void> {
    if (frames.length === 0) return;
    const srv = await this.server(s);
    const job = srv.chain.then(async () => {
      srv.child.stdin!.write(JSON.stringify({ count, interval_ms: intervalMs, frames }) + "\n");
      const answer = await this.nextLine(srv, s);
      if (!/^sent \d+$/.test(answer)) throw new Error(`attack.py in ${s.namespace}: ${answer}`);
    });
    srv.chain = job.catch(() => undefined);
    await job;
  }

  /** Stops every server this pool started (end of stdin, then SIGTERM by pid). */
  async close(): Promise<void> {
    await Promise.all(
      [...this.servers.values()].map(async (srv) => {
        srv.child.stdin!.end();
        await Promise.race([new Promise((r) => srv.child.once("exit", r)), sleep(1000)]);
        await stopProcess(srv.child, "SIGTERM");
      }),
    );
    this.servers.clear();
  }
}

/** The MAC of `ip` in a namespace's neighbour table (`ip -json neigh show`), undefined when it has no entry. */
async function neighbourMac(x: LabExec, w: NeighbourWatch): Promise<string | undefined> {
  const r = await x.probe(["ip", "-n", w.namespace, "-json", "neigh", "show", "to", w.ip, "dev", w.dev]);
  if (r.exitCode !== 0) throw new Error(`ip -n ${w.namespace} neigh show: ${r.stderr.trim()}`);
  const rows = JSON.parse(r.stdout || "[]") as { dst: string; lladdr?: string; state?: string[] }[];
  return rows.find((n) => n.dst === w.ip && n.lladdr && !(n.state ?? []).includes("FAILED"))?.lladdr?.toLowerCase();
}

/**
 * Runs one row: captures at every point it looks at, the controls' frames
 * and commands and the attack frames (controls first, so a leaked attack
 * cannot spoil them), a settle wait, then counts and verdict.
 */
export async function runAttackProbe(p: AttackProbe, dir: string, pool: SenderPool, x = new LabExec(60_000)): Promise<AttackRow> {
  const base = { check: p.check, from: p.from, to: p.to, expect: p.expect };
  const points = new Map<string, CapturePoint>();
  for (const l of [p.look, ...p.controls.map((c) => c.look)]) for (const pt of l.at) points.set(`${pt.namespace}/${pt.iface}`, pt);
  const caps = new Map<string, Capture>();
  const safe = p.check.replace(/[^a-z0-9]+/gi, "-").slice(0, 40);
  const stamp = `${safe}-${p.from}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    let before: string | undefined;
    if (p.neighbour) {
      before = await neighbourMac(x, p.neighbour);
      if (before !== p.neighbour.mac) {
        return { ...base, got: "unproven", ok: false, detail: `before the attack ${p.neighbour.name} holds ${p.neighbour.ip} at ${before ?? "no entry"}, not ${p.neighbour.mac}: nothing to poison` };
      }
    }
    await Promise.all(
      [...points].map(async ([key, pt], i) => {
        caps.set(key, await startCapture(pt, join(dir, `${stamp}-${i}.pcap`)));
      }),
    );
    const own = p.controls.filter((c) => c.frames && !c.from).flatMap((c) => c.frames!);
    const jobs: Promise<unknown>[] = [pool.send(p.sender, [...own, ...p.frames])];
    for (const c of p.controls) {
      if (c.frames && c.from) jobs.push(pool.send(c.from, c.frames));
      if (c.run) jobs.push(x.probe(c.run));
    }
    const settled = await Promise.allSettled(jobs);
    await sleep(ATTACK_TIMING.settle);
    await Promise.all([...caps.values()].map((c) => stopProcess(c.child)));
    const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
    const count = async (l: Look) => {
      let n = 0;
      const per: string[] = [];
      const counts = await Promise.all(l.at.map((pt) => countIn(x, caps.get(`${pt.namespace}/${pt.iface}`)!.file, l.filter)));
      l.at.forEach((pt, i) => {
        n += counts[i]!;
        per.push(`${counts[i]} at ${pt.name}`);
      });
      return { n, text: per.join(", ") };
    };
    const [attackCount, ...seen] = await Promise.all([p.look, ...p.controls.map((c) => c.look)].map(count));
    const attack = attackCount!;
    const controls = p.controls.map((c, i) => ({ c, seen: seen[i]! }));
    const missing = controls.filter((c) => c.seen.n === 0);
    let poisoned: string | undefined;
    if (p.neighbour) {
      const after = await neighbourMac(x, p.neighbour);
      if (after !== undefined && after !== p.neighbour.mac) poisoned = after;
    }
    const parts = [`attack: ${attack.text}`];
    if (p.neighbour) parts.push(`${p.neighbour.name} neighbour ${p.neighbour.ip}: ${poisoned ? `now ${poisoned} (poisoned)` : `kept ${p.neighbour.mac}`}`);
    for (const { c, seen } of controls) parts.push(`control ${c.what}: ${seen.text}`);
    const seenAttack = attack.n > 0 || poisoned !== undefined;
    let got: AttackRow["got"] = seenAttack ? "delivered" : "dropped";
    if (!seenAttack && p.expect === "dropped" && missing.length > 0) got = "unproven";
    const ok = got === p.expect && missing.length === 0;
    if (poisoned && p.neighbour) {
      await x.probe(["ip", "-n", p.neighbour.namespace, "neigh", "replace", p.neighbour.ip, "lladdr", p.neighbour.mac, "dev", p.neighbour.dev, "nud", "stale"]);
    }
    return { ...base, got, ok, detail: parts.join("; ") };
  } catch (err) {
    return { ...base, got: "error", ok: false, detail: (err as Error).message };
  } finally {
    await Promise.all([...caps.values()].map((c) => stopProcess(c.child)));
    for (const r of p.restore ?? []) await pool.send(r.from, r.frames, 1, 0).catch(() => undefined);
  }
}

/**
 * Before the rows: every VM taking part pings its gateway (bounded: three
 * tries of one echo each), so the neighbour entries the ARP rows watch exist
 * on both sides and a VM whose lease the hosts have not learned yet gets
 * the time to. Returns the VMs that never got an answer.
 */
export async function warmUp(probes: AttackProbe[], status: LabStatus, x = new LabExec(10_000)): Promise<string[]> {
  const names = new Set(probes.flatMap((p) => [p.sender.name, ...p.look.at.map((a) => a.name), ...p.controls.flatMap((c) => c.look.at.map((a) => a.name))]));
  const vms = status.vms.filter((v) => (v.kind === "namespace" || v.kind === "stranger") && v.ip && names.has(v.name));
  const gwOf = (v: LabVm) => status.gateways?.find((g) => g.network === v.network)?.ip;
  const failed: string[] = [];
  await Promise.all(
    vms.map(async (v) => {
      const gw = gwOf(v);
      if (!gw) return;
      for (let i = 0; i < 3; i++) {
        const r = await x.probe(inNs(v.namespace, ["ping", "-n", "-q", "-c", "1", "-W", "1", gw]));
        if (r.exitCode === 0) return;
      }
      failed.push(v.name);
    }),
  );
  // the kernel replaces a neighbour entry by a unicast ARP reply only after neigh locktime (1 s by default, ip-sysctl.rst)
  await sleep(1100);
  return failed.sort();
}

/**
 * What an exclusive row may disturb: its sender, every VM it looks at, the
 * neighbour entry it watches; a row that can teach switches a MAC it does
 * not own (it has a `restore`) disturbs everything.
 */
function stateKeys(p: AttackProbe): Set<string> {
  if (p.restore) return new Set(["*"]);
  const keys = new Set([p.sender.namespace, ...p.look.at.map((a) => a.namespace), ...p.controls.flatMap((c) => [...c.look.at.map((a) => a.namespace), ...(c.from ? [c.from.namespace] : [])])]);
  if (p.neighbour) keys.add(`neigh:${p.neighbour.namespace}/${p.neighbour.ip}`);
  return keys;
}

/** Exclusive rows in batches (in order, first fit) whose rows share nothing that one could disturb for another. */
export function exclusiveBatches(probes: AttackProbe[]): AttackProbe[][] {
  const batches: { rows: AttackProbe[]; keys: Set<string> }[] = [];
  for (const p of probes) {
    const keys = stateKeys(p);
    const fits = (b: { keys: Set<string> }) => !keys.has("*") && !b.keys.has("*") && ![...keys].some((k) => b.keys.has(k));
    const b = batches.find(fits);
    if (b) {
      b.rows.push(p);
      for (const k of keys) b.keys.add(k);
    } else batches.push({ rows: [p], keys });
  }
  return batches.map((b) => b.rows);
}

/**
 * Runs the attack rows: shared rows `concurrency` at a time (each with its
 * own ports, MACs and filters), then the exclusive ones in batches of rows
 * that touch disjoint namespaces and neighbour entries. pcap
 * files live in a temporary folder removed at the end.
 */
export async function runAttackProbes(probes: AttackProbe[], status: LabStatus, concurrency = 8): Promise<AttackRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "netfleet-attack-"));
  const pool = new SenderPool();
  try {
    // interpreters start (scapy imports) while the VMs warm up
    const senders = new Map(probes.flatMap((p) => [p.sender, ...p.controls.flatMap((c) => (c.from ? [c.from] : [])), ...(p.restore ?? []).map((r) => r.from)]).map((s) => [`${s.namespace}/${s.iface}`, s]));
    await Promise.all([warmUp(probes, status), ...[...senders.values()].map((s) => pool.start(s))]);
    const queue = new PQueue({ concurrency });
    const shared = await Promise.all(probes.filter((p) => !p.exclusive).map((p) => queue.add(() => runAttackProbe(p, dir, pool))));
    const exclusive: AttackRow[] = [];
    for (const batch of exclusiveBatches(probes.filter((q) => q.exclusive))) exclusive.push(...(await Promise.all(batch.map((p) => runAttackProbe(p, dir, pool)))));
    return [...(shared as AttackRow[]), ...exclusive];
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `netfleet-lab attack`: the rows for this lab and their results. @throws when the lab is not up. */
export async function labAttack(inventory: Inventory, status: LabStatus): Promise<AttackRow[]> {
  if (!status.up) throw new Error(`the lab is not up: ${(status.problems ?? []).join("; ") || "run netfleet-lab up"}`);
  return runAttackProbes(attackProbes(inventory, status), status);
}

// ---------------------------------------------------------------- windows

/** What a window measurement saw at the target. */
export interface WindowResult {
  /** Spoofed frames seen at the target during the whole window (goal: 0). */
  leaked: number;
  /** Legitimate frames seen before the event (the stream worked). */
  legitBefore: number;
  /** Legitimate frames seen in all. */
  legit: number;
  /** Longest gap between two legitimate frames after the event began (ms). */
  outageMs: number;
  /** From the event's trigger (e.g. the agent's start) to the legitimate frame that ended that gap (ms). */
  resumeMs: number | undefined;
  /** Spoofed and legitimate frames sent (attack.py's count; the two alternate). */
  sent: number;
}

/**
 * Measures a window: `sender` sends a spoofed and a legitimate datagram
 * every `intervalMs` (10-20 ms: ../shared/design/attack-tier.md) to `to`
 * while `event` disturbs the host; a text-mode tcpdump at `at` timestamps
 * every arrival. `event` resolves with the time (epoch ms) its trigger
 * happened (e.g. when the agent was started again). The stream runs until
 * legitimate frames have flowed again for 500 ms after the trigger, or
 * `resumeTimeoutMs` — every process started here is stopped by its pid.
 */
export async function measureWindow(opts: {
  sender: Sender;
  to: { mac: string; ip: string };
  spoofIp: string;
  at: CapturePoint;
  port: number;
  event: () => Promise<number>;
  intervalMs?: number;
  resumeTimeoutMs?: number;
}): Promise<WindowResult> {
  const interval = opts.intervalMs ?? 15;
  const legitFrame: Frame = { kind: "udp", src_mac: opts.sender.mac, dst_mac: opts.to.mac, src_ip: opts.sender.ip, dst_ip: opts.to.ip, dport: opts.port };
  const spoofFrame: Frame = { ...legitFrame, src_ip: opts.spoofIp };
  const cap = await startCapture(opts.at, "", `udp and dst port ${opts.port}`, true);
  const legit: number[] = [];
  let leaked = 0;
  let buf = "";
  cap.child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^(\d+\.\d+) IP (\d+\.\d+\.\d+\.\d+)\.\d+ >/.exec(line);
      if (!m) continue;
      if (m[2] === opts.sender.ip) legit.push(Math.round(Number(m[1]) * 1000));
      else if (m[2] === opts.spoofIp) leaked++;
    }
  });
  const maxRounds = Math.ceil(((opts.resumeTimeoutMs ?? 30_000) + 20_000) / interval);
  const argv = inNs(opts.sender.namespace, [PYTHON, ATTACK_PY, opts.sender.iface, String(Math.min(maxRounds, 10_000)), String(interval), JSON.stringify(legitFrame), JSON.stringify(spoofFrame)]);
  const stream = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  stream.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  stream.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  try {
    const until = Date.now() + 10_000;
    while (legit.length < 5) {
      if (Date.now() > until || stream.exitCode !== null) throw new Error(`the legitimate stream from ${opts.sender.name} never reached ${opts.at.name} (${out.trim().slice(-200)})`);
      await sleep(20);
    }
    const legitBefore = legit.length;
    const eventAt = Date.now();
    const trigger = await opts.event();
    const deadline = Date.now() + (opts.resumeTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      const last = legit[legit.length - 1] ?? 0;
      const firstAfter = legit.find((t) => t > trigger);
      if (firstAfter !== undefined && last - firstAfter >= 500) break;
      await sleep(50);
    }
    await stopProcess(stream, "SIGTERM");
    await sleep(300);
    await stopProcess(cap.child);
    let outageMs = 0;
    let resumeMs: number | undefined;
    const during = legit.filter((t) => t >= eventAt - 1000);
    for (let i = 1; i < during.length; i++) {
      const gap = during[i]! - during[i - 1]!;
      if (gap > outageMs) {
        outageMs = gap;
        resumeMs = during[i]! - trigger;
      }
    }
    if (!legit.some((t) => t > trigger)) resumeMs = undefined;
    const sent = Number(/sent (\d+)/.exec(out)?.[1] ?? 0);
    return { leaked, legitBefore, legit: legit.length, outageMs, resumeMs, sent };
  } finally {
    await stopProcess(stream, "SIGTERM");
    await stopProcess(cap.child);
  }
}
