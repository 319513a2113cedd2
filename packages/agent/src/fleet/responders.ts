import type { NatsConnection } from "@nats-io/transport-node";
import { checkSubject, encodeMessage } from "@netfleet/shared";
import { answerCheck, type CheckContext } from "./check.ts";

/** Who answers on a connection: the agent's site and enrolled host, and where its events go. */
export interface ResponderIdentity {
  site: string;
  host: string;
  log: (event: Record<string, unknown>) => void;
}

/**
 * Answers check requests (`netfleet rollout --check`) on `nf.<site>.check.<host>`
 * (subjects.ts checkSubject) for as long as `nc` is open. `context` is read
 * per request, so a request sees the keys and the envelope in force when it
 * arrives (a key rotation or an apply between two checks). A message without
 * a reply subject is ignored; a reply that cannot be sent (the connection
 * closed during the check) is logged as `check-reply-dropped`, and the
 * controller's request times out and asks again. Never throws.
 */
export function answerChecks(nc: NatsConnection, who: ResponderIdentity, context: () => Promise<Pick<CheckContext, "signingKeyPem" | "current" | "run">>): void {
  const checks = nc.subscribe(checkSubject(who.site, who.host));
  void (async () => {
    for await (const msg of checks) {
      if (!msg.reply) continue;
      const ctx: CheckContext = { site: who.site, host: who.host, log: who.log, ...(await context()) };
      const reply = encodeMessage(await answerCheck(ctx, msg.subject, msg.data));
      try {
        msg.respond(reply);
      } catch (err) {
        who.log({ event: "check-reply-dropped", error: (err as Error).message });
      }
    }
  })().catch((err: unknown) => who.log({ event: "subscription-error", subject: checkSubject(who.site, who.host), error: (err as Error).message }));
}
