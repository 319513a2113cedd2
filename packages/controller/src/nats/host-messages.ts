import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { DecodeError, hostOfSubject } from "@netfleet/shared";
import PQueue from "p-queue";
import { isStoreHiccup, withRetry } from "../store/kv.ts";

/**
 * Work kept in order per host: one task at a time for a host, in the order
 * queued; different hosts run side by side. p-queue has no keyed queue, so
 * this keeps one single-slot queue per host with work queued or running,
 * and forgets a host's queue once it is empty (a flood of invented host
 * names leaves nothing behind).
 */
export class HostQueues {
  private readonly queues = new Map<string, { queue: PQueue; tasks: number }>();

  /** Runs `work` after everything queued before for `host`; settles as `work` does (a failure does not stop the queue). */
  run<T>(host: string, work: () => Promise<T>): Promise<T> {
    let entry = this.queues.get(host);
    if (!entry) this.queues.set(host, (entry = { queue: new PQueue({ concurrency: 1 }), tasks: 0 }));
    entry.tasks++;
    const e = entry;
    return e.queue.add(work).finally(() => {
      if (--e.tasks === 0 && this.queues.get(host) === e) this.queues.delete(host);
    }) as Promise<T>;
  }

  /** How many hosts have work queued or running. */
  get size(): number {
    return this.queues.size;
  }

  /** Resolves once every host's queue is empty. */
  async idle(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.queue.onIdle()));
  }
}

/** How long a host message's handler is retried after transient failures (HostSubscriptions), ms. */
export const HANDLER_RETRY_MS = 10_000;

/**
 * The controller's subscriptions to per-host subjects (`nf.<site>.<kind>.<host>`,
 * see hostOfSubject). Each message is handled in its host's queue, so one
 * host's enrollment, reports and heartbeats are handled in the order they
 * came and never two at once. A handler that fails on a store hiccup
 * (store kv.ts isStoreHiccup, by the error's name only: JetStream not
 * answering for a moment, as while nats-server reloads its users, or a
 * timeout) is run again (withRetry, 100 ms doubling to 1 s, for
 * HANDLER_RETRY_MS; `handler-retry` logged each time), still in its host's
 * turn, unless its listen() says it retries by itself (the enrollment
 * service, whose rate limits are spent once per message): the message is
 * not dropped for a hiccup its sender cannot see. A handler's failure is logged
 * (`bad-message` for a DecodeError, `handler-error` otherwise), not thrown;
 * so is the end of a subscription by an error (`subscription-error`: a
 * permissions violation, a connection closed with an error).
 */
export class HostSubscriptions {
  private readonly nc: NatsConnection;
  private readonly queues: HostQueues;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly subscriptions: Subscription[] = [];

  constructor(nc: NatsConnection, queues: HostQueues, log: (event: Record<string, unknown>) => void) {
    this.nc = nc;
    this.queues = queues;
    this.log = log;
  }

  /**
   * Subscribes to `subject` (a `*` in the host position); messages whose subject names no host are dropped.
   * `retry: false`: the handler is run once (it retries store hiccups itself).
   */
  listen(subject: string, handle: (msg: Msg, host: string) => Promise<void>, options: { retry?: boolean } = {}): void {
    const retrying = options.retry ?? true;
    const sub = this.keep(this.nc.subscribe(subject));
    void (async () => {
      for await (const msg of sub) {
        const host = hostOfSubject(msg.subject);
        if (!host) continue;
        void this.queues.run(host, () =>
          (retrying ? withRetry(() => handle(msg, host), HANDLER_RETRY_MS, (err) => this.log({ event: "handler-retry", subject: msg.subject, error: err.message }), isStoreHiccup) : handle(msg, host)).catch((err: unknown) => {
            const error = err instanceof Error ? err.message : String(err);
            this.log({ event: err instanceof DecodeError ? "bad-message" : "handler-error", subject: msg.subject, error });
          }),
        );
      }
    })().catch((err: unknown) => this.log({ event: "subscription-error", subject, error: err instanceof Error ? err.message : String(err) }));
  }

  /** Keeps a subscription made elsewhere (the admin service) so that close ends it too. */
  keep(sub: Subscription): Subscription {
    this.subscriptions.push(sub);
    return sub;
  }

  /** Ends every subscription, then waits for the host queues to drain. */
  async close(): Promise<void> {
    for (const s of this.subscriptions) s.unsubscribe();
    await this.queues.idle();
  }
}
