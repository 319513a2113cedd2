import type { NatsConnection } from "@nats-io/transport-node";
import { DecodeError, ShowRequest, decodeMessage, encodeMessage, showSubject, summariseCounters, type CounterSample, type CountersSummary, type HostView, type ShowReply, type SignedAssignment } from "@netfleet/shared";
import type { ResponderIdentity } from "./responders.ts";

/** What a show request is answered from, read per request: the envelope in force, and the observation. */
export interface ShowContext {
  current: SignedAssignment | undefined;
  /** Reads the host now (show/observe.ts observeHost): read-only. */
  observe: () => Promise<HostView>;
}

/** How old the kept counter sample must be before a newer read replaces it as the baseline (ms). */
export const MIN_BASELINE_MS = 10_000;

/**
 * The counters baseline an agent keeps between show requests, in memory
 * (answerShows keeps one per connection): each summary compares a read with
 * the sample of an earlier one, so `netfleet status` run every minute says
 * what rose in that minute. The first read has no baseline (`sinceS`
 * absent, nothing rising). A read replaces the kept sample only once that
 * is MIN_BASELINE_MS old: requests close together compare against an older
 * read, not against each other.
 */
export class CounterBaseline {
  private sample: CounterSample | undefined;

  /** `view`'s counters summary against the kept sample (protocol/counters.ts summariseCounters). */
  summarise(view: HostView): CountersSummary {
    const { summary, sample } = summariseCounters(view, this.sample);
    if (!this.sample || sample.at - this.sample.at >= MIN_BASELINE_MS) this.sample = sample;
    return summary;
  }
}

/**
 * One show request (`netfleet show HOST`): decoded, checked to name this
 * site and host (else `ok: false`, "show request names another host"),
 * then the host is read; its counters are summarised against `baseline`
 * (scope `counters`: that summary is the whole answer, no view). An error of the reading is answered `ok: false`
 * with its message; nothing on the host changes either way.
 */
export async function answerShow(who: ResponderIdentity, ctx: ShowContext, subject: string, data: Uint8Array, baseline: CounterBaseline = new CounterBaseline()): Promise<ShowReply> {
  const reply = (ok: boolean, extra: { error?: string; view?: HostView; counters?: CountersSummary }): ShowReply => ({
    kind: "show-result",
    site: who.site,
    host: who.host,
    revision: ctx.current?.revision ?? 0,
    hash: ctx.current?.assignment.hash ?? null,
    ok,
    ...(extra.error !== undefined ? { error: extra.error.slice(0, 2000) } : {}),
    ...(extra.view ? { view: extra.view } : {}),
    ...(extra.counters ? { counters: extra.counters } : {}),
    at: new Date().toISOString(),
  });
  try {
    const request = decodeMessage(ShowRequest, subject, data);
    if (request.site !== who.site || request.host !== who.host) return reply(false, { error: "show request names another host" });
    const view = await ctx.observe();
    const counters = baseline.summarise(view);
    if (request.scope === "counters") return reply(true, { counters });
    who.log({ event: "shown", links: view.links.length, bridges: view.bridges?.length ?? null, vmPorts: view.vmPorts.length, problems: view.problems.length });
    return reply(true, { view: { ...view, counters } });
  } catch (err) {
    if (err instanceof DecodeError) who.log({ event: "show-rejected", error: err.message });
    return reply(false, { error: (err as Error).message });
  }
}

/**
 * Answers `netfleet show` requests on `nf.<site>.show.<host>` (subjects.ts
 * showSubject; only this host's agent may subscribe there, only the
 * controller may publish: permissions.ts agentUser) for as long as `nc` is
 * open, one at a time. `context` is read per request. A reply over the
 * server's max_payload is replaced by `ok: false` naming its size. A message without a
 * reply subject is ignored; a reply that cannot be sent is logged as
 * `show-reply-dropped` (the controller's request times out). Never throws.
 */
export function answerShows(nc: NatsConnection, who: ResponderIdentity, context: () => Promise<ShowContext>): void {
  const subject = showSubject(who.site, who.host);
  const requests = nc.subscribe(subject);
  const baseline = new CounterBaseline();
  void (async () => {
    for await (const msg of requests) {
      if (!msg.reply) continue;
      const ctx = await context().catch((err: unknown) => ({ current: undefined, observe: () => Promise.reject(err as Error) }));
      const answer = await answerShow(who, ctx, msg.subject, msg.data, baseline);
      let reply = encodeMessage(answer);
      // Over the server's max_payload the reply would be refused: say so instead of letting the request time out.
      const max = nc.info?.max_payload ?? 1024 * 1024;
      if (reply.length > max) {
        const { view: _dropped, ...rest } = answer;
        reply = encodeMessage({ ...rest, ok: false, error: `the view is ${reply.length} bytes, over the server's max_payload of ${max} bytes` });
      }
      try {
        msg.respond(reply);
      } catch (err) {
        who.log({ event: "show-reply-dropped", error: (err as Error).message });
      }
    }
  })().catch((err: unknown) => who.log({ event: "subscription-error", subject, error: (err as Error).message }));
}
