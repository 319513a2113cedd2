/**
 * The controller side of one benchmark rollout, in a process of its own so
 * its memory is its own (spawned by rollout.ts; argument: a 0600 JSON file).
 * What `netfleet rollout` does: ControlPlane.connect, then Rollout.run over
 * every host (default waves: a canary, then 25 % batches). The clock starts
 * right before run(); convergeMs ends when the last host's report of the new
 * revision reached this process. p50/p99 are per host: from its revision
 * stored in the desired bucket (seen on the bucket's subject) to its report. nats-server's /varz message counters are
 * read at both ends of the window (every node's, summed).
 *
 * Prints one JSON line: {"event":"result", ...}.
 */
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { ControlPlane, Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { desiredBucket, kvSubject, reportSubject, sealAssignment, type Host, type SigningKeys } from "@netfleet/shared";

export interface ControllerArgs {
  site: string;
  servers: string[];
  user: string;
  password: string;
  enrollPassword: string;
  token: string;
  signing: SigningKeys;
  credentialsDir: string;
  /** Every nats-server node's monitoring URL: /varz counters are summed over them. */
  monitorUrls: string[];
  /** KV replicas of the site's buckets: the number of nats-server nodes (1 or 3). */
  replicas: number;
  hosts: Host[];
  applyTimeoutMs: number;
  /** Hosts per wave after the canary, percent (default: Rollout's 25 %). */
  batchPercent?: number;
}

const a = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as ControllerArgs;
const out = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");

type Counters = { in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number };
/** nats-server's message and byte counters, summed over every node (a cluster's route traffic between nodes included). */
async function varz(): Promise<Counters> {
  const each = await Promise.all(a.monitorUrls.map(async (u) => (await (await fetch(`${u}/varz`, { signal: AbortSignal.timeout(5000) })).json()) as Counters));
  const sum: Counters = { in_msgs: 0, out_msgs: 0, in_bytes: 0, out_bytes: 0 };
  for (const v of each) for (const k of Object.keys(sum) as (keyof Counters)[]) sum[k] += v[k];
  return sum;
}

const cp = await ControlPlane.connect({
  site: a.site,
  servers: a.servers,
  user: a.user,
  password: a.password,
  hosts: a.hosts,
  enrollmentToken: a.token,
  enrollmentPassword: a.enrollPassword,
  signing: a.signing,
  credentialsDir: a.credentialsDir,
  replicas: a.replicas,
});

// Four sysctls per host: what the simulated hosts can hold. Every host is fresh (enrolled, nothing
// desired yet), so any report of revision >= 1 is this rollout's.
const targets: RolloutTarget[] = a.hosts.map(({ name: host, role }) => ({
  host,
  role,
  assignment: sealAssignment({
    apiVersion: "netfleet.dev/v1",
    kind: "HostAssignment",
    site: a.site,
    host,
    role,
    resources: [1, 2, 3, 4].map((k) => ({ kind: "sysctl" as const, name: `net.bench.k${k}`, value: "1" })),
  }),
}));

// When each host's revision is stored in the desired bucket (published) and when its report of
// it arrives: per-host latency is the difference. These subscriptions' copies are subtracted
// from the message count: they exist only to measure.
let t0 = 0;
const reportedAt = new Map<string, number>();
/** Hosts whose report of this rollout's revision carried failed resources, or a lockout rollback. */
const failedReports = new Set<string>();
const rolledBackReports = new Set<string>();
const publishedAt = new Map<string, number>();
let probeMsgs = 0;
const published = cp.nc.subscribe(kvSubject(desiredBucket(a.site), "*"));
void (async () => {
  for await (const m of published) {
    probeMsgs++;
    const host = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    if (t0 && !publishedAt.has(host)) publishedAt.set(host, performance.now() - t0);
  }
})();
let allReported: () => void = () => {};
const everyone = new Promise<void>((r) => (allReported = r));
const probe = cp.nc.subscribe(reportSubject(a.site, "*"));
void (async () => {
  for await (const m of probe) {
    probeMsgs++;
    const r = JSON.parse(m.string()) as { host: string; revision: number; rolledBack: boolean; summary: { failed: number } };
    // Converged: this rollout's revision applied with no failed resource. A failed apply, or a
    // rollback by lockout protection, is counted apart and never as converged.
    if (r.revision >= 1 && !r.rolledBack && r.summary.failed === 0 && !reportedAt.has(r.host)) {
      reportedAt.set(r.host, performance.now() - t0);
      if (reportedAt.size === a.hosts.length) allReported();
    } else if (r.revision >= 1 && !reportedAt.has(r.host)) {
      (r.rolledBack ? rolledBackReports : failedReports).add(r.host);
    }
  }
})();
await cp.nc.flush();

const events: Record<string, number> = {};
let done: Extract<RolloutEvent, { event: "done" }> | undefined;
/** Per failed host: the rollout's reason, and when it was judged (ms from run()). */
const hostErrors = new Map<string, { error: string; atMs: number }>();
let stoppedAtMs: number | undefined;
let waves = 0;
const marks: number[] = [];
const emit = (e: RolloutEvent) => {
  events[e.event] = (events[e.event] ?? 0) + 1;
  if (e.event === "rollout") waves = e.waves.length;
  // Informational: when the plan was made and each wave started (ms from run()).
  if (e.event === "rollout" || e.event === "wave") marks.push(Math.round(performance.now() - t0));
  if (e.event === "done") done = e;
  if (e.event === "host-done" && !e.ok) hostErrors.set(e.host, { error: e.error ?? "failed", atMs: Math.round(performance.now() - t0) });
  if (e.event === "budget-exceeded") stoppedAtMs = Math.round(performance.now() - t0);
};

// Memory over the rollout, sampled: where the peak RSS goes (V8 heap, or buffers outside it).
const mb = (b: number) => Math.round(b / 2 ** 20);
const peak = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
let atPeakRss = process.memoryUsage();
const peakAt = { rss: 0, heapUsed: 0 };
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  if (m.rss > peak.rss) (atPeakRss = m), (peakAt.rss = Math.round(performance.now() - t0));
  if (m.heapUsed > peak.heapUsed) peakAt.heapUsed = Math.round(performance.now() - t0);
  for (const k of Object.keys(peak) as (keyof typeof peak)[]) peak[k] = Math.max(peak[k], m[k]);
}, 200);
const memBefore = process.memoryUsage();

const before = await varz();
// This process's CPU (user + system, process.cpuUsage: microseconds) over Rollout.run().
const cpu0 = process.cpuUsage();
t0 = performance.now();
const loop = monitorEventLoopDelay({ resolution: 20 });
loop.enable();
const { result } = await new Rollout(cp, targets, { applyTimeoutMs: a.applyTimeoutMs, ...(a.batchPercent ? { batch: { percent: a.batchPercent } } : {}) }, emit).run();
loop.disable();
const runMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
clearInterval(sampler);
if (process.env.NF_BENCH_HEAP_SNAPSHOT) (await import("node:v8")).writeHeapSnapshot(process.env.NF_BENCH_HEAP_SNAPSHOT);
// The probe may trail the rollout's own subscription by a moment; bounded.
await Promise.race([everyone, new Promise((r) => setTimeout(r, 3000))]);
await cp.nc.flush();
const after = await varz();
const times = [...reportedAt.values()].sort((x, y) => x - y);
// Per host: its revision published -> its applied report heard.
const latencies = [...reportedAt].flatMap(([h, at]) => (publishedAt.has(h) ? [at - publishedAt.get(h)!] : [])).sort((x, y) => x - y);
const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)]! : NaN);
out({
  event: "result",
  result,
  hosts: a.hosts.length,
  reported: reportedAt.size,
  waves,
  convergeMs: Math.round(times.at(-1) ?? NaN),
  p50Ms: Math.round(pct(50)),
  p99Ms: Math.round(pct(99)),
  maxMs: Math.round(latencies.at(-1) ?? NaN),
  measuredLatencies: latencies.length,
  runMs: Math.round(runMs),
  marks,
  maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  heapUsedMb: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
  memory: {
    before: { rss: mb(memBefore.rss), heapUsed: mb(memBefore.heapUsed), external: mb(memBefore.external) },
    atPeakRss: Object.fromEntries(Object.entries(atPeakRss).map(([k, v]) => [k, mb(v)])),
    peaks: Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, mb(v)])),
    peakAtMs: peakAt,
  },
  messages: after.in_msgs + after.out_msgs - (before.in_msgs + before.out_msgs) - probeMsgs,
  bytes: after.in_bytes + after.out_bytes - (before.in_bytes + before.out_bytes),
  cpuMs: Math.round((cpu.user + cpu.system) / 1000),
  failed: done?.failed.length ?? 0,
  // Hosts that did not converge (no report of the revision applied without failures) or that the rollout counted failed, each once.
  // This process's event loop over the rollout: how late timers and I/O callbacks ran (ms).
  eventLoopDelayMs: { p99: Math.round(loop.percentile(99) / 1e6), max: Math.round(loop.max / 1e6) },
  failedOrMissing: new Set([...a.hosts.map((h) => h.name).filter((h) => !reportedAt.has(h)), ...(done?.failed ?? [])]).size,
  failedReports: failedReports.size,
  rolledBackReports: rolledBackReports.size,
  failures: failureSummary(),
  ...(stoppedAtMs !== undefined ? { stoppedAtMs } : {}),
  events,
});
probe.unsubscribe();

/**
 * The failed hosts' reasons, grouped: host names and numbers taken out, so that 7,000 timeouts are one
 * line; with the first hosts of each reason and when the first and last were judged.
 */
function failureSummary(): { reason: string; hosts: number; sample: string[]; firstAtMs: number; lastAtMs: number }[] {
  const groups = new Map<string, { reason: string; hosts: number; sample: string[]; firstAtMs: number; lastAtMs: number }>();
  const reasons = done?.reasons ?? {};
  for (const host of done?.failed ?? []) if (!hostErrors.has(host)) hostErrors.set(host, { error: reasons[host] ?? "(no reason given)", atMs: NaN });
  for (const [host, { error, atMs }] of hostErrors) {
    const key = error.split(host).join("HOST").replace(/\d+/g, "N");
    const g = groups.get(key) ?? { reason: key, hosts: 0, sample: [], firstAtMs: atMs, lastAtMs: atMs };
    g.hosts++;
    if (g.sample.length < 5) g.sample.push(host);
    g.firstAtMs = Math.min(g.firstAtMs, atMs);
    g.lastAtMs = Math.max(g.lastAtMs, atMs);
    groups.set(key, g);
  }
  return [...groups.values()].sort((x, y) => y.hosts - x.hosts);
}
published.unsubscribe();
await cp.close();
process.exit(0);
