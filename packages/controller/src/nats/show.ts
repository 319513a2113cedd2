import type { NatsConnection } from "@nats-io/transport-node";
import { ShowReply, decodeMessage, encodeMessage, showSubject, summariseCounters, type CountersSummary, type ShowRequest } from "@netfleet/shared";
import { requestAgent } from "./agent-request.ts";

/** No agent answered a show request: not connected, or older than show (protocol 1.2); `reason` says which it was. */
export class ShowUnansweredError extends Error {
  readonly host: string;
  readonly reason: "no-responder" | "timeout";
  constructor(host: string, reason: "no-responder" | "timeout", timeoutMs: number) {
    super(
      reason === "no-responder"
        ? `${host}'s agent is not connected (or runs a version without show): nobody answers its show requests; netfleet status shows when it was last seen`
        : `${host}'s agent did not answer within ${timeoutMs / 1000} s (busy, or its connection is down); try again, or --timeout longer`,
    );
    this.name = "ShowUnansweredError";
    this.host = host;
    this.reason = reason;
  }
}

function noResponders(err: unknown): boolean {
  const e = err as { name?: string; isNoResponders?: () => boolean; cause?: { name?: string } };
  return e?.name === "NoRespondersError" || e?.cause?.name === "NoRespondersError" || (typeof e?.isNoResponders === "function" && e.isNoResponders());
}

function timedOut(err: unknown): boolean {
  const e = err as { name?: string; cause?: { name?: string } };
  return e?.name === "TimeoutError" || e?.cause?.name === "TimeoutError";
}

/**
 * `netfleet show HOST` on the wire (`nf.<site>.show.<host>`,
 * request/reply): asks that host's agent what it sees now and decodes its
 * reply (protocol/show.ts). Nothing is written anywhere.
 * @throws ShowUnansweredError when no agent subscribes (no responders) or
 *   none answers within `timeoutMs`; DecodeError for a reply that does not decode.
 */
export async function requestShow(nc: NatsConnection, site: string, host: string, timeoutMs: number, scope?: "counters"): Promise<ShowReply> {
  const request: ShowRequest = { kind: "show", site, host, ...(scope ? { scope } : {}) };
  let msg;
  try {
    msg = await requestAgent(nc, site, host, showSubject(site, host), encodeMessage(request), timeoutMs);
  } catch (err) {
    if (noResponders(err)) throw new ShowUnansweredError(host, "no-responder", timeoutMs);
    if (timedOut(err)) throw new ShowUnansweredError(host, "timeout", timeoutMs);
    throw err;
  }
  return decodeMessage(ShowReply, `show ${host}`, msg.data);
}

/** How long `netfleet status` waits for one host's counters (ms): its agent reads the whole host for them (as show does), a second or more on a busy host. */
export const COUNTERS_TIMEOUT_MS = 10_000;

/**
 * A host's counters summary for `netfleet status` (store/status.ts
 * `counters`): a show request with scope `counters`, answered by the agent
 * against its earlier read (fleet/show.ts CounterBaseline). An agent older
 * than counters answers with its whole view: it is summarised here, with
 * nothing rising (no baseline). Undefined when the agent does not answer in
 * `timeoutMs`, is not connected, or could not read its host; never throws
 * for those.
 */
export function countersSource(nc: NatsConnection, site: string, timeoutMs = COUNTERS_TIMEOUT_MS): (host: string) => Promise<CountersSummary | undefined> {
  return async (host) => {
    try {
      const reply = await requestShow(nc, site, host, timeoutMs, "counters");
      if (!reply.ok) return undefined;
      return reply.counters ?? reply.view?.counters ?? (reply.view ? summariseCounters(reply.view).summary : undefined);
    } catch (err) {
      if (err instanceof TypeError || err instanceof ReferenceError) throw err;
      return undefined;
    }
  };
}
