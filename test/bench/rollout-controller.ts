/**
 * The controller side of one benchmark rollout, in a process of its own so
 * its memory and CPU are its own (spawned by rollout.ts; argument: a 0600
 * JSON file). What `netfleet rollout` does: ControlPlane.connect, then
 * Rollout.run over every host (default waves: a canary, then 25 % batches).
 * Nothing else runs here: the hosts' publish and report times are taken by
 * the probe process (rollout-probe.ts), and rollout.ts reads nats-server's
 * counters after the probe has heard every report.
 *
 * Prints {"event":"running", t0Epoch, varzBefore} right before run() and
 * {"event":"result", ...} after it (runMs, marks, memory, CPU).
 */
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { getHeapSpaceStatistics, getHeapStatistics } from "node:v8";
import { ControlPlane, Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import { boundOldGeneration } from "@netfleet/shared/cli/launch";
import { sealAssignment, type Host, type SigningKeys } from "@netfleet/shared";
import { varzCounters } from "./rollout-probe.ts";

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
  /** Set LONG_RUNNING_V8_FLAGS first, as `netfleet rollout` does (boundOldGeneration; rollout.ts: unless given other controller flags). */
  boundOldGeneration?: boolean;
}

const a = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as ControllerArgs;
if (a.boundOldGeneration !== false) boundOldGeneration();
const out = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");

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

/** performance.now() at run(): marks and judged times are ms from it. */
let t0 = 0;

const events: Record<string, number> = {};
let done: Extract<RolloutEvent, { event: "done" }> | undefined;
/** Per failed host: the rollout's reason, and when it was judged (ms from run()). */
const hostErrors = new Map<string, { error: string; atMs: number }>();
let stoppedAtMs: number | undefined;
let waves = 0;
const marks: number[] = [];
/** When the last host was judged before each wave started, and at the end (ms from run()): a wave's start minus the one before it is the gap between waves. */
const judgedBefore: number[] = [];
let lastJudged = 0;
const emit = (e: RolloutEvent) => {
  events[e.event] = (events[e.event] ?? 0) + 1;
  if (e.event === "rollout") waves = e.waves.length;
  // Informational: when the plan was made and each wave started (ms from run()).
  if (e.event === "rollout" || e.event === "wave") marks.push(Math.round(performance.now() - t0));
  if (e.event === "wave") judgedBefore.push(lastJudged);
  if (e.event === "host-done") lastJudged = Math.round(performance.now() - t0);
  if (e.event === "done") done = e;
  if (e.event === "host-done" && !e.ok) hostErrors.set(e.host, { error: e.error ?? "failed", atMs: Math.round(performance.now() - t0) });
  if (e.event === "budget-exceeded") stoppedAtMs = Math.round(performance.now() - t0);
};

// Memory over the rollout, sampled: where the peak RSS goes (V8 heap, or buffers outside it).
const mb = (b: number) => Math.round(b / 2 ** 20);
const peak = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
let atPeakRss = process.memoryUsage();
/** V8's heap spaces when RSS peaked: committed (physical) MB per space (new_space, old_space, large_object_space, code_space...). */
let spacesAtPeakRss: Record<string, number> = {};
const peakAt = { rss: 0, heapUsed: 0 };
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  if (m.rss > peak.rss) {
    atPeakRss = m;
    peakAt.rss = Math.round(performance.now() - t0);
    spacesAtPeakRss = Object.fromEntries(getHeapSpaceStatistics().filter((s) => s.physical_space_size > 2 ** 20).map((s) => [s.space_name.replace(/_space$/, ""), mb(s.physical_space_size)]));
  }
  if (m.heapUsed > peak.heapUsed) peakAt.heapUsed = Math.round(performance.now() - t0);
  for (const k of Object.keys(peak) as (keyof typeof peak)[]) peak[k] = Math.max(peak[k], m[k]);
}, 200);
const memBefore = process.memoryUsage();

const before = await varzCounters(a.monitorUrls);
// This process's CPU (user + system, process.cpuUsage: microseconds) over Rollout.run().
const cpu0 = process.cpuUsage();
t0 = performance.now();
out({ event: "running", t0Epoch: performance.timeOrigin + t0, varzBefore: before });
const loop = monitorEventLoopDelay({ resolution: 20 });
loop.enable();
const { result } = await new Rollout(cp, targets, { applyTimeoutMs: a.applyTimeoutMs, ...(a.batchPercent ? { batch: { percent: a.batchPercent } } : {}) }, emit).run();
loop.disable();
const runMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
clearInterval(sampler);
if (process.env.NF_BENCH_HEAP_SNAPSHOT) (await import("node:v8")).writeHeapSnapshot(process.env.NF_BENCH_HEAP_SNAPSHOT);
out({
  event: "result",
  result,
  hosts: a.hosts.length,
  waves,
  runMs: Math.round(runMs),
  marks,
  judgedBefore: [...judgedBefore, lastJudged],
  maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  heapUsedMb: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
  memory: {
    before: { rss: mb(memBefore.rss), heapUsed: mb(memBefore.heapUsed), external: mb(memBefore.external) },
    atPeakRss: Object.fromEntries(Object.entries(atPeakRss).map(([k, v]) => [k, mb(v)])),
    peaks: Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, mb(v)])),
    peakAtMs: peakAt,
    spacesAtPeakRss,
    // Where RSS is outside the V8 heap: /proc/self/status (RssAnon: malloc and heap pages; RssFile: the node binary
    // and libraries mapped in) and V8's own malloc (compiler zones; peak over the process).
    ...procStatus(),
    v8MallocMb: mb(getHeapStatistics().malloced_memory),
    v8PeakMallocMb: mb(getHeapStatistics().peak_malloced_memory),
  },
  cpuMs: Math.round((cpu.user + cpu.system) / 1000),
  failed: done?.failed.length ?? 0,
  // The hosts the rollout counted failed (rollout.ts adds those that never reported).
  failedHosts: done?.failed ?? [],
  // This process's event loop over the rollout: how late timers and I/O callbacks ran (ms).
  eventLoopDelayMs: { p99: Math.round(loop.percentile(99) / 1e6), max: Math.round(loop.max / 1e6) },
  failures: failureSummary(),
  ...(stoppedAtMs !== undefined ? { stoppedAtMs } : {}),
  events,
});

/** VmHWM, RssAnon, RssFile and RssShmem of /proc/self/status, in MB (proc(5)); empty off Linux. */
function procStatus(): Record<string, number> {
  try {
    const text = readFileSync("/proc/self/status", "utf8");
    return Object.fromEntries(["VmHWM", "RssAnon", "RssFile", "RssShmem"].flatMap((k) => {
      const m = new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(text);
      return m ? [[k, Math.round(Number(m[1]) / 1024)]] : [];
    }));
  } catch {
    return {};
  }
}

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
await cp.close();
process.exit(0);
