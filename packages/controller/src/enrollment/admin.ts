import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { AdminReply, AdminRequest, adminSubject, decodeMessage, encodeMessage } from "@netfleet/shared";
import type { HostRecord } from "../store/registry.ts";
import { HostNotFoundError } from "./service.ts";

/** The operator actions `netfleet hosts approve|reject|revoke|rekey` ask of the running service. */
export type AdminAction = AdminRequest["action"];

/** What serves every admin action: EnrollmentService. */
export interface AdminHandler {
  admin(action: AdminAction, host: string, options?: AdminOptions): Promise<HostRecord>;
}

/** Options of an admin action: `replaceKey` (approve) names the claim key an approved host may be handed to. */
export interface AdminOptions {
  replaceKey?: string;
}

/**
 * Serves `netfleet hosts approve|reject|revoke|rekey` from other controller processes on
 * `nf.<site>.admin` (AdminRequest → AdminReply): only the running service
 * holds the user directory, so only it can change NATS users. A refusal is
 * answered `{ok: false, error}` (cut to 2000 characters). A subscription
 * ended by an error (a permissions violation, a connection closed with an
 * error) is logged as `subscription-error`, not thrown.
 * `act` is the EnrollmentService (every action), or a function that serves
 * approve and reject only (revoke and rekey are then refused).
 * Returns the subscription (unsubscribe to stop).
 */
export function serveAdmin(
  nc: NatsConnection,
  site: string,
  act: ((action: "approve" | "reject", host: string) => Promise<HostRecord>) | AdminHandler,
  log: (event: Record<string, unknown>) => void,
): Subscription {
  const sub = nc.subscribe(adminSubject(site));
  void (async () => {
    for await (const msg of sub) {
      let reply: AdminReply;
      try {
        const req = decodeMessage(AdminRequest, msg.subject, msg.data);
        let record: HostRecord;
        if (typeof act !== "function") record = await act.admin(req.action, req.host, req.replaceKey ? { replaceKey: req.replaceKey } : {});
        else if (req.action === "approve" || req.action === "reject") record = await act(req.action, req.host);
        // A bare function only knows approve and reject (it maps anything else to reject): never hand it revoke or rekey.
        else throw new Error(`this controller service does not serve ${req.action} yet (restart netfleet serve after upgrading)`);
        reply = { ok: true, record };
      } catch (err) {
        reply = { ok: false, error: (err as Error).message.slice(0, 2000) };
      }
      msg.respond(encodeMessage(reply));
    }
  })().catch((err: unknown) => log({ event: "subscription-error", subject: sub.getSubject(), error: err instanceof Error ? err.message : String(err) }));
  return sub;
}

/**
 * Asks the running controller service to approve, reject, revoke or rekey a host.
 * @throws Error when no service answers (start `netfleet serve`) or in `timeoutMs`;
 *   HostNotFoundError when the service refused (the host has not enrolled, is not in the inventory, ...).
 */
export async function requestAdmin(nc: NatsConnection, site: string, action: AdminAction, host: string, timeoutMs: number, options: AdminOptions = {}): Promise<HostRecord> {
  const request: AdminRequest = { kind: "admin", action, host, ...(options.replaceKey ? { replaceKey: options.replaceKey } : {}) };
  let msg;
  try {
    msg = await nc.request(adminSubject(site), encodeMessage(request), { timeout: timeoutMs });
  } catch (err) {
    if (/no responders|503/i.test((err as Error).message)) throw new Error(`no controller service answers for site ${site}: start netfleet serve first`);
    throw err;
  }
  const reply = decodeMessage(AdminReply, "admin reply", msg.data);
  if (!reply.ok) throw new HostNotFoundError(host, (reply.error ?? "refused").replace(new RegExp(`^${host}: `), ""));
  return reply.record as HostRecord;
}
