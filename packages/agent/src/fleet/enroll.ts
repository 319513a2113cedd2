import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import pRetry from "p-retry";
import {
  AgentCredentials,
  ENROLL_FACTS_MAX_BYTES,
  Rekey,
  Welcome,
  rekeyContext,
  rekeySubject,
  type BoxKeys,
  type RekeyReply,
  decodeMessage,
  encodeMessage,
  enrollSubject,
  openSealed,
  welcomeContext,
  welcomeSubject,
  type EnrollFacts,
} from "@netfleet/shared";
import { connectNats, pause, retrySchedule, type Backoff, type ConnectionSettings } from "./connection.ts";
import { gatherHostFacts, type HostFacts } from "./host-facts.ts";
import type { AgentState } from "./state.ts";

/** Who the agent says it is when it asks to join. */
export interface Claim {
  site: string;
  /** The name to enroll as (a DNS label). */
  hostname: string;
  /** The site's join token, presented in the facts. */
  token: string;
  agentVersion: string;
  gatherFacts?: () => Promise<HostFacts>;
}

/**
 * The enroll message: the claim, the host's facts and the public half of
 * the enrollment key, within ENROLL_FACTS_MAX_BYTES encoded (the controller
 * refuses bigger ones): when the interfaces do not fit, physical links
 * (no link kind) and links with a MAC are kept first, in their order, and
 * the rest dropped (a hypervisor's hundreds of VM taps say nothing the
 * controller matches on).
 */
export async function enrollFacts(claim: Claim, publicKey: string, host = claim.hostname): Promise<EnrollFacts> {
  const gathered = await (claim.gatherFacts ?? gatherHostFacts)();
  const facts: EnrollFacts = {
    kind: "enroll",
    site: claim.site,
    hostname: host,
    token: claim.token,
    agentVersion: claim.agentVersion,
    ...gathered,
    publicKey,
    sentAt: new Date().toISOString(),
  };
  return fitFacts(facts, ENROLL_FACTS_MAX_BYTES);
}

/** `facts` with as many interfaces as fit in `maxBytes` encoded, the most useful first (see enrollFacts). */
export function fitFacts(facts: EnrollFacts, maxBytes: number): EnrollFacts {
  if (encodeMessage(facts).length <= maxBytes) return facts;
  const rank = (i: EnrollFacts["interfaces"][number]) => (i.kind === null ? 0 : 2) + (i.mac ? 0 : 1);
  const ordered = facts.interfaces.map((i, n) => ({ i, n })).sort((a, b) => rank(a.i) - rank(b.i) || a.n - b.n);
  const size = (k: number) => encodeMessage({ ...facts, interfaces: ordered.slice(0, k).map((x) => x.i) }).length;
  let lo = 0;
  let hi = ordered.length;
  // The largest k whose encoding fits (size grows with k).
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (size(mid) <= maxBytes) lo = mid;
    else hi = mid - 1;
  }
  return { ...facts, interfaces: ordered.slice(0, lo).sort((a, b) => a.n - b.n).map((x) => x.i) };
}

/**
 * Answers a `netfleet hosts rekey` request (Rekey on rekeySubject, a subject
 * of the agent's own inbox): opens the credentials sealed to this agent's
 * key for this site and host, checks they are for this host, hands them to
 * `keep` (which stores them; the agent connects with them once the server
 * refuses the old password) and answers RekeyReply ok. Anything that does
 * not open or fit is answered `{ok: false, error}` and nothing is kept.
 * Returns the subscription (unsubscribe to stop).
 */
export function answerRekeys(
  nc: NatsConnection,
  site: string,
  host: string,
  keys: BoxKeys,
  keep: (credentials: AgentCredentials) => Promise<void>,
  log: (event: Record<string, unknown>) => void,
): Subscription {
  const sub = nc.subscribe(rekeySubject(site, host));
  void (async () => {
    for await (const msg of sub) {
      let reply: RekeyReply;
      try {
        const box = decodeMessage(Rekey, msg.subject, msg.data);
        if (box.site !== site || box.host !== host) throw new Error(`rekey for ${box.site}/${box.host}, not ${site}/${host}`);
        const credentials = decodeMessage(AgentCredentials, "rekey", openSealed(keys, box, rekeyContext(site, host)));
        if (credentials.site !== site || credentials.host !== host) throw new Error("rekey credentials name another host");
        await keep(credentials);
        reply = { kind: "rekey-reply", ok: true };
        log({ event: "rekeyed", host, user: credentials.user });
      } catch (err) {
        reply = { kind: "rekey-reply", ok: false, error: (err as Error).message.slice(0, 2000) };
        log({ event: "rekey-refused", error: (err as Error).message });
      }
      if (msg.reply) msg.respond(encodeMessage(reply));
    }
  })().catch((err: unknown) => log({ event: "subscription-error", subject: sub.getSubject(), error: (err as Error).message }));
  return sub;
}

/** What enrollment needs beyond the claim. */
export interface EnrollOptions {
  claim: Claim;
  /** The shared enrollment NATS user. */
  user: string;
  password: string;
  connection: ConnectionSettings;
  /** The agent's reconnect schedule (connection.ts), shared with its own connection. */
  backoff: Backoff;
  state: AgentState;
  /** Facts are sent again this often until a welcome arrives (ms, default 10 s). */
  retryMs?: number;
  signal: AbortSignal;
  log: (event: Record<string, unknown>) => void;
}

/**
 * Enrolls until welcomed: connects as the shared enrollment user, sends the
 * facts every retryMs, and opens the welcome sealed to this agent's key
 * (welcomes sealed to another agent's key are ignored). The credentials are
 * kept in the state dir. Any failure (an enrollment connection that closes
 * under us, facts that cannot be gathered) is tried again, with backoff,
 * forever. Undefined when `signal` aborts first.
 */
export async function enroll(o: EnrollOptions): Promise<AgentCredentials | undefined> {
  const schedule = retrySchedule(o.backoff, o.signal, (error) => o.log({ event: "connection-lost", during: "enroll", error: error.message }));
  // Re-thrown as a plain Error: p-retry gives up at once on a TypeError (e.g. from gathering facts), and enrollment must not.
  const attempt = () =>
    enrollOnce(o).catch((err: unknown) => {
      throw new Error(err instanceof Error ? err.message : String(err), { cause: err });
    });
  let welcomed: AgentCredentials | undefined;
  try {
    welcomed = await pRetry(attempt, schedule);
  } catch (err) {
    if (o.signal.aborted) return undefined;
    throw err;
  }
  if (!welcomed) return undefined;
  await o.state.saveCredentials(welcomed);
  o.log({ event: "enrolled", host: welcomed.host, user: welcomed.user });
  return welcomed;
}

/** The reason the wait for a welcome is ended with once one was opened (AbortController.abort's reason). */
const WELCOMED = "welcomed";

async function enrollOnce(o: EnrollOptions): Promise<AgentCredentials | undefined> {
  const { site, hostname } = o.claim;
  const keys = await o.state.boxKeys();
  const nc = await connectNats(o.connection, { user: o.user, pass: o.password, name: `netfleet-enroll-${hostname}` }, o.backoff, o.signal);
  if (!nc) return undefined;
  const closeOnStop = () => void nc.close().catch(() => {});
  o.signal.addEventListener("abort", closeOnStop, { once: true });
  const welcome = new AbortController();
  const waiting = AbortSignal.any([o.signal, welcome.signal]);
  const sub = nc.subscribe(welcomeSubject(site, hostname));
  let welcomed: AgentCredentials | undefined;
  const received = (async () => {
    for await (const msg of sub) {
      try {
        const sealed = decodeMessage(Welcome, msg.subject, msg.data);
        const opened = openSealed(keys, sealed, welcomeContext(site, hostname));
        welcomed = decodeMessage(AgentCredentials, "welcome", opened);
        // A reason of our own: abort() without one makes a DOMException, stack and all (44 us each, 218 ms of one
        // bench process's 5,000 enrollments); nothing reads it (pause() only listens for the event).
        welcome.abort(WELCOMED);
        return;
      } catch (err) {
        o.log({ event: "welcome-ignored", error: (err as Error).message });
      }
    }
  })();
  try {
    while (!waiting.aborted) {
      const facts = await enrollFacts(o.claim, keys.publicKey);
      nc.publish(enrollSubject(site, hostname), encodeMessage(facts));
      o.log({ event: "enroll-sent", hostname });
      await pause(o.retryMs ?? 10_000, waiting);
    }
  } finally {
    o.signal.removeEventListener("abort", closeOnStop);
    sub.unsubscribe();
    await received;
    await nc.close().catch(() => {});
  }
  return welcomed;
}
