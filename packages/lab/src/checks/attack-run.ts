/**
 * Running the attack tier (attack.ts says what the rows are): one scapy
 * sender per VM namespace, tcpdump captures at the targets started before
 * and stopped after the frames (by pid, bounded), verdicts counted from the
 * captures, rows that change shared state run in separate batches
 * (capture.ts, sender.ts; the windows are in window.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import PQueue from "p-queue";
import type { Inventory } from "@netfleet/shared";
import { LabExec, netnsExec, sleep } from "../exec.ts";
import type { LabStatus, LabVm } from "../types.ts";
import { attackProbes } from "./attack.ts";
import type { AttackProbe, AttackRow, CapturePoint, Look, NeighbourWatch } from "./attack-types.ts";
import { ATTACK_TIMING, countIn, startCapture, stopProcess, type Capture } from "./capture.ts";
import { SenderPool } from "./sender.ts";

const inNs = netnsExec;

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
async function runAttackProbe(p: AttackProbe, dir: string, pool: SenderPool, x = new LabExec(60_000)): Promise<AttackRow> {
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
async function warmUp(probes: AttackProbe[], status: LabStatus, x = new LabExec(10_000)): Promise<string[]> {
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
async function runAttackProbes(probes: AttackProbe[], status: LabStatus, concurrency = 8): Promise<AttackRow[]> {
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
