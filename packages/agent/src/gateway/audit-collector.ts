import { execa, type ResultPromise } from "execa";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { AUDIT_BATCH_MAX, auditSubject, encodeMessage, type AuditBatch, type AuditRecord, type ResourceSpec } from "@netfleet/shared";
import { PcapFormatError, PcapStreamReader, decodeNflog, toAuditRecord, type Skip } from "./audit-nflog.ts";
import { captureMarker, markCapture, stopMarkedCapture, unmarkCapture } from "./audit-pidfile.ts";
import { CoalescingRunner } from "../coalescing-runner.ts";

/** A network whose gateway logs to an nflog group (NftTableSpec.networks[].auditGroup). */
export interface AuditSource {
  network: string;
  group: number;
}

/** The audited networks of an assignment's resources: its nft table's networks with an `auditGroup` (none without a table). */
export function auditSources(resources: readonly ResourceSpec[]): AuditSource[] {
  return resources.flatMap((r) => (r.kind === "nft-table" ? r.networks : [])).flatMap((n) => (n.auditGroup !== undefined ? [{ network: n.name, group: n.auditGroup }] : []));
}

/** The collector's site, host (once enrolled), run dir for its captures, and log. */
export interface AuditCollectorOptions {
  site: string;
  /** This backend's inventory host name (its subject token); undefined until enrolled: records wait in the queue. */
  host: () => string | undefined;
  /** The capture command of one group; default `tcpdump -i nflog:G -U -s 1024 -w -` (tcpdump(8): -U writes each packet at once). */
  captureArgv?: (group: number) => string[];
  /**
   * The agent's run dir (`Toolbox.runDir`): each capture's pid is marked in
   * `<runDir>/audit/nflog-<group>.pid`, and a capture a killed agent left
   * running (same pid, same command line) is stopped before ours starts
   * (audit-pidfile.ts). Absent: no marks.
   */
  runDir?: string;
  /** Batches are published this often, ms (default 250). */
  flushMs?: number;
  /** Most records held while they cannot be published (default 20,000); more are counted as lost. */
  maxQueue?: number;
  /** A publish waits this long for the stream's acknowledgement, ms (default 2000). */
  publishTimeoutMs?: number;
  /** A capture that exits is started again after this long, doubling up to `restartMaxMs` while it keeps failing (default 500 ms, 30 s). */
  restartMinMs?: number;
  restartMaxMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

/** One running capture: a child process per nflog group. */
interface Capture {
  source: AuditSource;
  child: ResultPromise | undefined;
  startedAt: number;
  delayMs: number;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
  /** A start under way (a left-behind capture being stopped first). */
  starting?: Promise<void>;
}

/** 64 KiB of a capture's stderr is kept (its last lines explain an exit). */
const STDERR_KEEP = 64 * 1024;

/**
 * The backend side of the gateway audit. For each audited network it runs
 * one capture child on the network's nflog group (argv array, no shell;
 * started again with backoff when it exits; stopped by its pid with
 * SIGTERM), reads the pcap stream it writes (audit-nflog.ts), and keeps the
 * records in a bounded queue. Every `flushMs` it publishes them, one
 * `AuditBatch` per network of up to 500 records, to
 * `nf.<site>.audit.<host>.<network>` and waits for the audit stream's
 * acknowledgement; unacknowledged records stay queued and go again. When
 * the queue is full new records are dropped and counted, and the count
 * travels in the network's next batch (`lost`). Nothing here needs NATS to
 * capture: records wait (bounded) until `attach` gives a connection and the
 * agent knows its host name. With `runDir`, each child's pid is marked, so a
 * capture left running by a killed agent is stopped by the next one.
 */
export class AuditCollector {
  /** Counters since start: records read, published (acknowledged), lost (queue full), skipped (by reason), restarts, bad streams. */
  readonly stats = { records: 0, published: 0, lost: 0, skipped: { prefix: 0, network: 0, packet: 0 } as Record<Skip, number>, restarts: 0, badStreams: 0 };
  private readonly options: AuditCollectorOptions;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly captures = new Map<number, Capture>();
  private queue: AuditRecord[] = [];
  private readonly lost = new Map<string, number>();
  private nc: NatsConnection | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Publishes one flush at a time; a flush asked for during one runs once more right after it. */
  private readonly flusher: CoalescingRunner;
  private failing = "";
  private stopped = false;

  constructor(options: AuditCollectorOptions) {
    this.options = options;
    this.log = options.log ?? (() => {});
    this.flusher = new CoalescingRunner({
      run: () => this.publishQueued(),
      onError: (err) => this.log({ event: "audit-publish-failed", error: (err as Error).message }),
    });
  }

  /** The groups to capture: new ones start, ones no longer listed stop (their queued records are still published). */
  configure(sources: readonly AuditSource[]): void {
    if (this.stopped) return;
    const wanted = new Map(sources.map((s) => [s.group, s]));
    for (const [group, capture] of this.captures) {
      const next = wanted.get(group);
      if (next?.network === capture.source.network) continue;
      this.stopCapture(capture);
      this.captures.delete(group);
    }
    for (const source of wanted.values()) {
      if (this.captures.has(source.group)) continue;
      const capture: Capture = { source, child: undefined, startedAt: 0, delayMs: this.options.restartMinMs ?? 500, timer: undefined, stopped: false };
      this.captures.set(source.group, capture);
      this.spawn(capture);
    }
    if (this.captures.size > 0 && !this.timer) this.timer = setInterval(() => void this.flush(), this.options.flushMs ?? 250);
  }

  /** The connection to publish on (a new one, or the same one reconnected). */
  attach(nc: NatsConnection): void {
    this.nc = nc;
  }

  /** The networks captured now, with their groups and the pids of their capture children. */
  running(): { network: string; group: number; pid: number | undefined }[] {
    return [...this.captures.values()].map((c) => ({ network: c.source.network, group: c.source.group, pid: c.child?.pid }));
  }

  /** Stops every capture (SIGTERM to each child's pid, then waits for it), then publishes what is queued once more. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    const children = [...this.captures.values()].map((c) => this.stopCapture(c));
    this.captures.clear();
    await Promise.allSettled(children);
    await this.flush();
  }

  private spawn(capture: Capture): void {
    if (capture.stopped || this.stopped) return;
    const { group, network } = capture.source;
    const argv = this.options.captureArgv?.(group) ?? ["tcpdump", "-i", `nflog:${group}`, "-U", "-s", "1024", "-w", "-"];
    if (this.options.runDir === undefined) return this.start(capture, argv, undefined);
    const marker = captureMarker(this.options.runDir, group);
    capture.starting = stopMarkedCapture(marker, argv).then((pid) => {
      if (pid !== undefined) this.log({ event: "audit-capture-orphan-stopped", network, group, pid });
      this.start(capture, argv, marker);
    });
  }

  private start(capture: Capture, argv: string[], marker: string | undefined): void {
    if (capture.stopped || this.stopped) return;
    const { group, network } = capture.source;
    const [file, ...args] = argv;
    const child = execa(file!, args, { reject: false, buffer: false, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    if (marker && child.pid) void markCapture(marker, child.pid);
    capture.child = child;
    capture.startedAt = Date.now();
    const reader = new PcapStreamReader();
    let stderr = "";
    let broken = false;
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-STDERR_KEEP);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      if (broken) return;
      try {
        for (const packet of reader.push(chunk)) {
          const record = toAuditRecord(decodeNflog(packet.data, reader.littleEndian), packet.time, network);
          if (typeof record === "string") this.stats.skipped[record]++;
          else this.enqueue(record);
        }
      } catch (err) {
        // A stream we cannot read any further (PcapFormatError, or anything unforeseen: never thrown out of
        // this handler, which would end the agent): start the capture again, a fresh stream with its header.
        broken = true;
        this.stats.badStreams++;
        this.lose(network, 1);
        this.log({ event: "audit-capture-unreadable", network, group, error: (err as Error).message, format: err instanceof PcapFormatError });
        child.kill("SIGTERM");
      }
    });
    this.log({ event: "audit-capture-start", network, group, pid: child.pid });
    void child.then((result) => {
      if (capture.child === child) capture.child = undefined;
      if (marker && child.pid) void unmarkCapture(marker, child.pid);
      if (capture.stopped || this.stopped) return;
      // A capture that ran a minute was healthy: its next start is quick again.
      if (Date.now() - capture.startedAt > 60_000) capture.delayMs = this.options.restartMinMs ?? 500;
      const delay = capture.delayMs;
      capture.delayMs = Math.min(delay * 2, this.options.restartMaxMs ?? 30_000);
      this.stats.restarts++;
      this.log({ event: "audit-capture-exit", network, group, pid: child.pid, exitCode: result.exitCode ?? null, signal: result.signal ?? null, stderr: lastLines(stderr), restartInMs: delay });
      capture.timer = setTimeout(() => this.spawn(capture), delay);
    });
  }

  private async stopCapture(capture: Capture): Promise<void> {
    capture.stopped = true;
    clearTimeout(capture.timer);
    await capture.starting;
    const child = capture.child;
    if (!child?.pid) return;
    try {
      process.kill(child.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
    await child;
  }

  private enqueue(record: AuditRecord): void {
    this.stats.records++;
    if (this.queue.length >= (this.options.maxQueue ?? 20_000)) {
      this.lose(record.network, 1);
      return;
    }
    this.queue.push(record);
  }

  private lose(network: string, n: number): void {
    this.stats.lost += n;
    this.lost.set(network, (this.lost.get(network) ?? 0) + n);
  }

  /**
   * Publishes the queue, one batch at a time per network, oldest first;
   * stops at the first batch not acknowledged. Resolves once a flush begun
   * after the call has ended (one under way is followed by one more).
   */
  private flush(): Promise<void> {
    return this.flusher.request();
  }

  private async publishQueued(): Promise<void> {
    const host = this.options.host();
    const nc = this.nc;
    if (!host || !nc || nc.isClosed()) return;
    const networks = new Set([...this.queue.map((r) => r.network), ...[...this.lost].filter(([, n]) => n > 0).map(([k]) => k)]);
    for (const network of networks) {
      for (;;) {
        const records = this.queue.filter((r) => r.network === network).slice(0, AUDIT_BATCH_MAX);
        const lost = this.lost.get(network) ?? 0;
        if (records.length === 0 && lost === 0) break;
        const batch: AuditBatch = { kind: "audit", site: this.options.site, host, network, records, lost };
        try {
          // Stored when the audit stream acknowledges (a JetStream publish; no API call, which an agent may not make).
          await jetstream(nc, { checkAPI: false, timeout: this.options.publishTimeoutMs ?? 2000 }).publish(auditSubject(this.options.site, host, network), encodeMessage(batch));
        } catch (err) {
          const error = (err as Error).message;
          if (error !== this.failing) this.log({ event: "audit-publish-failed", network, error });
          this.failing = error;
          return;
        }
        this.failing = "";
        const sent = new Set(records);
        this.queue = this.queue.filter((r) => !sent.has(r));
        this.lost.set(network, (this.lost.get(network) ?? 0) - lost);
        this.stats.published += records.length;
        if (records.length < AUDIT_BATCH_MAX) break;
      }
    }
  }
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join("\n").slice(0, 500);
}
