/**
 * The rollout benchmark's measuring probe, in a process of its own (spawned
 * by rollout.ts; argument: a 0600 JSON file, ProbeArgs): it hears each
 * host's revision stored in the desired bucket (the bucket's subject) and
 * each agent's report (the report subject, published by the agent once its
 * confirmation went through), and keeps when, as ms since the epoch
 * (performance.timeOrigin + performance.now(): sub-millisecond, and
 * comparable with the controller process's clock on the same machine).
 *
 * It used to run inside the controller process: there its two
 * subscriptions (every assignment the controller published came back to
 * it, every report was parsed) were counted in the controller's CPU and
 * peak RSS, which `netfleet rollout` never pays.
 *
 * Protocol on stdout, one JSON line each: {"event":"ready"} once subscribed
 * (the server has the interest), {"event":"all-reported"} when every host
 * has reported its new revision applied, and after a line "stop" on stdin
 * (or stdin closing) {"event":"probe", ...ProbeResult} before it exits.
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { connect } from "@nats-io/transport-node";
import { desiredBucket, kvSubject, reportSubject } from "@netfleet/shared";

export interface ProbeArgs {
  site: string;
  servers: string[];
  user: string;
  password: string;
  /** Hosts expected to report (all-reported is said when each has). */
  hosts: number;
}

/** What the probe heard (times: ms since the epoch, fractional). */
export interface ProbeResult {
  /** Per host: its first revision heard stored in the desired bucket. */
  publishedAt: Record<string, number>;
  /** Per host: its first report of revision >= 1 applied without failures and not rolled back. */
  reportedAt: Record<string, number>;
  /** Hosts whose first report of revision >= 1 carried failed resources (never counted as reported). */
  failedReports: string[];
  /** Hosts whose first such report said rolledBack (lockout protection undid the revision). */
  rolledBackReports: string[];
  /** Messages and payload bytes (headers included) delivered to the probe: taken off nats-server's counters. */
  messages: number;
  bytes: number;
}

/** nats-server's /varz message and byte counters. */
export type Counters = { in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number };

/** The /varz counters summed over every node at `monitorUrls` (a cluster's route traffic between nodes included); 5 s per node. */
export async function varzCounters(monitorUrls: readonly string[]): Promise<Counters> {
  const each = await Promise.all(monitorUrls.map(async (u) => (await (await fetch(`${u}/varz`, { signal: AbortSignal.timeout(5000) })).json()) as Counters));
  const sum: Counters = { in_msgs: 0, out_msgs: 0, in_bytes: 0, out_bytes: 0 };
  for (const v of each) for (const k of Object.keys(sum) as (keyof Counters)[]) sum[k] += v[k];
  return sum;
}

const now = () => performance.timeOrigin + performance.now();

if (import.meta.main) {
  const a = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as ProbeArgs;
  const out = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");
  const nc = await connect({ servers: a.servers, user: a.user, pass: a.password, name: "bench-probe", noAsyncTraces: true });
  const publishedAt: Record<string, number> = {};
  const reportedAt: Record<string, number> = {};
  const failedReports = new Set<string>();
  const rolledBackReports = new Set<string>();
  let messages = 0;
  let bytes = 0;
  let reported = 0;
  const host = (subject: string) => subject.slice(subject.lastIndexOf(".") + 1);
  const size = (m: { data: Uint8Array; headers?: unknown }) => m.data.length + (m.headers ? String(m.headers).length : 0);
  const published = nc.subscribe(kvSubject(desiredBucket(a.site), "*"), {
    callback: (_err, m) => {
      messages++;
      bytes += size(m);
      const h = host(m.subject);
      publishedAt[h] ??= now();
    },
  });
  const reports = nc.subscribe(reportSubject(a.site, "*"), {
    callback: (_err, m) => {
      const at = now();
      messages++;
      bytes += size(m);
      const r = JSON.parse(m.string()) as { host: string; revision: number; rolledBack: boolean; summary: { failed: number } };
      if (r.revision < 1 || reportedAt[r.host] !== undefined) return;
      // Converged: the new revision applied with no failed resource. A failed apply, or a
      // rollback by lockout protection, is counted apart and never as converged.
      if (!r.rolledBack && r.summary.failed === 0) {
        reportedAt[r.host] = at;
        if (++reported === a.hosts) out({ event: "all-reported" });
      } else (r.rolledBack ? rolledBackReports : failedReports).add(r.host);
    },
  });
  await nc.flush();
  out({ event: "ready" });
  let finished = false;
  const finish = async () => {
    if (finished) return;
    finished = true;
    await nc.flush().catch(() => {});
    published.unsubscribe();
    reports.unsubscribe();
    const result: ProbeResult = { publishedAt, reportedAt, failedReports: [...failedReports], rolledBackReports: [...rolledBackReports], messages, bytes };
    await nc.close();
    // A pipe takes a large line in several writes: exit once it is all out (process.exit would cut it).
    process.stdout.write(JSON.stringify({ event: "probe", ...result }) + "\n", () => process.exit(0));
  };
  createInterface({ input: process.stdin }).on("line", (l) => l.trim() === "stop" && void finish()).on("close", () => void finish());
}
