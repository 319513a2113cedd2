import { nuid, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { agentReplySubject } from "@netfleet/shared";

/**
 * A request to one host's agent (check, show, rekey) whose answer comes on `nf.<site>.reply.<host>.<id>`
 * (shared subjects.ts agentReplySubject, a fresh NUID per request), not on this connection's inbox: agents may
 * publish there and to no inbox, so no agent can answer a message of the controller's that it merely hears (its
 * desired key's JetStream publish) with a forged acknowledgement. nats.js's request with `noMux` and `reply`:
 * one subscription to that subject for this request, gone after the answer or `timeoutMs`.
 * @throws nats.js's TimeoutError after `timeoutMs`, NoRespondersError when nothing subscribes to `subject`
 *   (nats-server's 503 status to the reply subject), RequestError otherwise (a closed connection).
 */
export function requestAgent(nc: NatsConnection, site: string, host: string, subject: string, data: Uint8Array, timeoutMs: number): Promise<Msg> {
  return nc.request(subject, data, { timeout: timeoutMs, noMux: true, reply: agentReplySubject(site, host, nuid.next()) });
}
