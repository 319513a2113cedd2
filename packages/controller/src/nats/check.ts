import type { NatsConnection } from "@nats-io/transport-node";
import { CheckReply, checkSubject, decodeMessage, encodeMessage, signAssignment, type CheckRequest, type HostAssignment } from "@netfleet/shared";
import type { DesiredStore } from "../store/desired.ts";
import { requestAgent } from "./agent-request.ts";

/**
 * Check mode on one host (`nf.<site>.check.<host>`): the agent runs a
 * check-mode reconcile of this assignment against the live host and says
 * what would change. The assignment is signed with the revision after the
 * host's current desired one, as a publish would; nothing is written.
 * @throws on timeout (`timeoutMs`), no responder, or a reply that does not decode.
 */
export async function requestCheck(
  nc: NatsConnection,
  site: string,
  desired: DesiredStore,
  privateKeyPem: string,
  assignment: HostAssignment,
  timeoutMs: number,
): Promise<CheckReply> {
  const current = await desired.read(assignment.host).catch(() => undefined);
  const envelope = signAssignment(assignment, (current?.envelope.revision ?? 0) + 1, privateKeyPem);
  const request: CheckRequest = { kind: "check", site, host: assignment.host, envelope };
  const msg = await requestAgent(nc, site, assignment.host, checkSubject(site, assignment.host), encodeMessage(request), timeoutMs);
  return decodeMessage(CheckReply, `check ${assignment.host}`, msg.data);
}
