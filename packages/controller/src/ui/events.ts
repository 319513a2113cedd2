import type { ServerResponse } from "node:http";
import type { UiSource } from "./source.ts";

/** Most dashboards following live at once; one more is answered 503 (each costs a socket and a share of every refresh). */
export const MAX_EVENT_CLIENTS = 32;
/** Writes to the buckets within this window share one refresh (a wave of reports is one read, not one per host). */
const COALESCE_MS = 250;
/** Status is re-read this often while someone follows, as health also changes with time (a host going quiet). */
const STATUS_EVERY_MS = 10_000;
/** An SSE comment this often keeps proxies and the browser from calling the stream idle. */
const PING_EVERY_MS = 15_000;

/**
 * The live side of the dashboard: Server-Sent Events (WHATWG HTML,
 * "Server-sent events") on GET /api/events. Each client gets `status` and
 * `rollout` events (data: the JSON of GET /api/status and /api/rollout) at
 * once, then again whenever the source's KV watches report a write
 * (coalesced over COALESCE_MS), and `status` every STATUS_EVERY_MS. The
 * watches run only while some client follows. Reads only.
 */
export class EventHub {
  private readonly source: UiSource;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly clients = new Set<ServerResponse>();
  private stopWatch: (() => void) | undefined;
  private timers: NodeJS.Timeout[] = [];
  private pending = new Set<"status" | "rollout">();
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(source: UiSource, log: (event: Record<string, unknown>) => void) {
    this.source = source;
    this.log = log;
  }

  /** How many clients follow now. */
  get size(): number {
    return this.clients.size;
  }

  /** Takes a client's response as an event stream; false (nothing written) when MAX_EVENT_CLIENTS already follow. */
  add(res: ServerResponse): boolean {
    if (this.clients.size >= MAX_EVENT_CLIENTS) return false;
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
    res.write("retry: 2000\n\n");
    this.clients.add(res);
    res.on("close", () => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stop();
    });
    if (this.clients.size === 1) this.start();
    void this.send(["status", "rollout"], res);
    return true;
  }

  /** Ends every stream and stops the watches. */
  close(): void {
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.stop();
  }

  private start(): void {
    void this.source
      .watch((what) => this.changed(what === "rollout" ? "rollout" : "status"))
      .then((stop) => {
        if (this.clients.size === 0) stop();
        else this.stopWatch = stop;
      })
      .catch((err: unknown) => this.log({ event: "ui-watch-error", level: "warn", error: (err as Error).message }));
    this.timers = [
      setInterval(() => this.changed("status"), STATUS_EVERY_MS),
      setInterval(() => {
        for (const res of this.clients) res.write(": ping\n\n");
      }, PING_EVERY_MS),
    ];
  }

  private stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.pending.clear();
    this.stopWatch?.();
    this.stopWatch = undefined;
  }

  private changed(what: "status" | "rollout"): void {
    this.pending.add(what);
    // A rollout write also moves the hosts' rows (applying, reports): both are re-read.
    if (what === "rollout") this.pending.add("status");
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      const kinds = [...this.pending];
      this.pending.clear();
      void this.send(kinds);
    }, COALESCE_MS);
  }

  /** Reads each kind once and writes it to `only`, or to every client. */
  private async send(kinds: readonly ("status" | "rollout")[], only?: ServerResponse): Promise<void> {
    for (const kind of kinds) {
      let data: string;
      try {
        data = JSON.stringify(kind === "status" ? await this.source.status() : await this.source.rollout());
      } catch (err) {
        data = JSON.stringify({ error: (err as Error).message });
      }
      // One event: `event:` line, one `data:` line (JSON has no raw newline), blank line.
      const frame = `event: ${kind}\ndata: ${data}\n\n`;
      for (const res of only ? [only] : this.clients) if (!res.writableEnded) res.write(frame);
    }
  }
}
