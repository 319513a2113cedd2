import { hostname as osHostname } from "node:os";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  AgentCredentials,
  AssignmentRejectedError,
  CheckRequest,
  checkSubject,
  DNS_LABEL,
  DecodeError,
  Welcome,
  appliedBucket,
  decodeMessage,
  decodeSignedAssignment,
  decodeSignedAssignmentValue,
  desiredBucket,
  directGetSubject,
  encodeMessage,
  enrollSubject,
  heartbeatSubject,
  kvSubject,
  openSealed,
  reportSubject,
  verifySignedAssignment,
  welcomeContext,
  welcomeSubject,
  type EnrollFacts,
  type CheckReply,
  type Heartbeat,
  type HostAssignment,
  type Report,
  type CorrectiveChange,
  type ResourceOutcome,
  type ResultsSummary,
  type SignedAssignment,
} from "@netfleet/shared";
import { AgentState, type Checkpoint } from "./agent-state.ts";
import { gatherHostFacts, type HostFacts } from "./host-facts.ts";

/** What an apply (or a rollback) left on the host, as the agent reports it. */
export interface ApplyOutcome {
  summary: ResultsSummary;
  results: ResourceOutcome[];
}

export interface AgentClientOptions {
  site: string;
  /** The name to enroll as; defaults to the first label of the hostname. */
  hostname?: string;
  servers: string[];
  /** Where the agent keeps its enrollment key, credentials and checkpoint. */
  runDir: string;
  /** The shared enrollment user, and the site token presented in the facts. */
  enrollment: { user: string; password: string; token: string };
  /** The controller's signing key (PEM). Without it, the key in the welcome is trusted and pinned. */
  signingPublicKeyPem?: string;
  agentVersion: string;
  /** Converge the host to this assignment. */
  onAssignment: (assignment: HostAssignment, revision: number) => Promise<ApplyOutcome>;
  /**
   * Check mode on request of the controller (`netfleet rollout --check`):
   * what would change to reach this assignment; must run no mutating command.
   * Without it the agent does not answer check requests.
   */
  onCheck?: (assignment: HostAssignment) => Promise<ApplyOutcome & { changes?: Record<string, string[]> }>;
  /** Lockout protection: converge back to the previous assignment (undefined: there was none). */
  rollback: (previous: HostAssignment | undefined) => Promise<ApplyOutcome>;
  gatherFacts?: () => Promise<HostFacts>;
  heartbeatMs?: number;
  /** After an apply, NATS must be reachable again within this time, or the apply is undone. */
  confirmDeadlineMs?: number;
  enrollRetryMs?: number;
  resyncMs?: number;
  /** First reconnect delay; it doubles per failed attempt up to reconnectMaxMs, each with random jitter (50-150 %). */
  reconnectTimeWaitMs?: number;
  reconnectMaxMs?: number;
  /**
   * Called with the agent's own connection once it is set up (`fresh`: a new
   * connection object, subscriptions must be made on it) and after each
   * reconnect of that connection (`fresh` false: its subscriptions carry
   * over, but what was published meanwhile was missed). Must not throw.
   */
  onConnection?: (nc: NatsConnection, fresh: boolean) => void;
  log?: (event: Record<string, unknown>) => void;
}

const EMPTY: ApplyOutcome = { summary: { ok: 0, changed: 0, failed: 0, pending: 0 }, results: [] };

/**
 * The agent's side of the control plane. Enrolls (facts to the controller,
 * credentials back sealed to its own key), then watches its one desired key
 * without JetStream consumers: a core subscription on `$KV.<bucket>.<host>`
 * says something changed, a direct get reads what is stored (a core message
 * may be a write the stream refused). Only a signed, newer assignment for
 * this host is applied. After each apply the agent must complete a
 * JetStream round trip (its report stored and read back) within the
 * deadline, or it restores the previous assignment and reports that once
 * NATS answers again. Disconnects never tear anything down.
 */
export class AgentClient {
  private readonly options: AgentClientOptions;
  private readonly state: AgentState;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly claimedName: string;
  private credentials: AgentCredentials | undefined;
  private checkpoint: Checkpoint = {};
  private nc: NatsConnection | undefined;
  private enrollNc: NatsConnection | undefined;
  private connected = false;
  private stopped = false;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[] = [];
  private delivering: Promise<void> | undefined;
  private readonly startedAt = Date.now();
  private readonly sleepers = new Set<() => void>();
  private readonly backoff: Backoff;

  constructor(options: AgentClientOptions) {
    this.options = options;
    this.state = new AgentState(options.runDir);
    this.log = options.log ?? (() => {});
    const name = options.hostname ?? osHostname().split(".")[0]!.toLowerCase();
    if (!DNS_LABEL.test(name)) throw new Error(`hostname ${JSON.stringify(name)} is not a DNS label; give the agent a host name`);
    this.claimedName = name;
    const base = options.reconnectTimeWaitMs ?? 1000;
    this.backoff = new Backoff(base, options.reconnectMaxMs ?? Math.max(base * 32, 5000));
  }

  /** The inventory host name once enrolled. */
  get host(): string | undefined {
    return this.credentials?.host;
  }

  /** The assignment in force (from the checkpoint at start): what a daemon should start with. */
  get current(): SignedAssignment | undefined {
    return this.checkpoint.current;
  }

  get lastRolledBack(): { revision: number; hash: string } | undefined {
    return this.checkpoint.rolledBack;
  }

  /** Resolves once connected with the agent's own credentials (after enrollment), or when stopped first. */
  async start(): Promise<void> {
    this.checkpoint = await this.state.checkpoint();
    if (this.checkpoint.pending) {
      // Interrupted before its confirmation: the daemon starts from `current`, and the pending revision is fetched and confirmed again.
      this.log({ event: "unconfirmed-revision-dropped", revision: this.checkpoint.pending.revision });
      delete this.checkpoint.pending;
      await this.state.saveCheckpoint(this.checkpoint);
    }
    this.credentials = await this.state.credentials();
    if (!this.credentials) this.credentials = await this.enroll();
    if (!this.credentials || this.stopped) return;
    await this.connectAgent(this.credentials);
  }

  /** Enrolls until welcomed (or stopped): an enrollment connection that closes under us is replaced, with backoff. */
  private async enroll(): Promise<AgentCredentials | undefined> {
    for (;;) {
      try {
        return await this.enrollOnce();
      } catch (err) {
        if (this.stopped) return undefined;
        this.log({ event: "connection-lost", during: "enroll", error: (err as Error).message });
        await this.sleep(this.backoff.next());
      }
    }
  }

  private async enrollOnce(): Promise<AgentCredentials | undefined> {
    const { site, enrollment } = this.options;
    const keys = await this.state.boxKeys();
    const nc = await this.connectWith({ user: enrollment.user, pass: enrollment.password, name: `netfleet-enroll-${this.claimedName}` });
    if (!nc) return undefined;
    this.enrollNc = nc;
    const sub = nc.subscribe(welcomeSubject(site, this.claimedName));
    let welcomed: AgentCredentials | undefined;
    const received = (async () => {
      for await (const msg of sub) {
        try {
          const welcome = decodeMessage(Welcome, msg.subject, msg.data);
          const opened = openSealed(keys, welcome, welcomeContext(site, this.claimedName));
          welcomed = decodeMessage(AgentCredentials, "welcome", opened);
          this.wakeAll();
          return;
        } catch (err) {
          // Welcomes sealed to another agent's key land here too.
          this.log({ event: "welcome-ignored", error: (err as Error).message });
        }
      }
    })();
    try {
      while (!welcomed && !this.stopped) {
        const facts = await this.facts(keys.publicKey);
        nc.publish(enrollSubject(site, this.claimedName), encodeMessage(facts));
        this.log({ event: "enroll-sent", hostname: this.claimedName });
        await this.sleep(this.options.enrollRetryMs ?? 10_000);
      }
    } finally {
      sub.unsubscribe();
      await received;
      this.enrollNc = undefined;
      await nc.close();
    }
    if (!welcomed) return undefined;
    await this.state.saveCredentials(welcomed);
    this.log({ event: "enrolled", host: welcomed.host, user: welcomed.user });
    return welcomed;
  }

  private async facts(publicKey: string): Promise<EnrollFacts> {
    const gathered = await (this.options.gatherFacts ?? gatherHostFacts)();
    return {
      kind: "enroll",
      site: this.options.site,
      hostname: this.claimedName,
      token: this.options.enrollment.token,
      agentVersion: this.options.agentVersion,
      ...gathered,
      publicKey,
      sentAt: new Date().toISOString(),
    };
  }

  private async connectWith(auth: { user: string; pass: string; name: string; inboxPrefix?: string }): Promise<NatsConnection | undefined> {
    const backoff = this.backoff;
    // Reconnect forever: exponential backoff with jitter, reset once connected (nats.js randomises the server order too).
    for (;;) {
      if (this.stopped) return undefined;
      try {
        return await connect({
          servers: this.options.servers,
          ...auth,
          maxReconnectAttempts: -1,
          reconnectDelayHandler: () => backoff.next(),
          waitOnFirstConnect: true,
          pingInterval: 10_000,
          maxPingOut: 3,
          timeout: 5000,
        });
      } catch (err) {
        this.log({ event: "connect-failed", error: (err as Error).message });
        await this.sleep(backoff.next());
      }
    }
  }

  /**
   * Connects with the agent's own credentials and sets the connection up.
   * A connection that closes under us — while being set up (a server
   * reload can drop a client that has not finished connecting: the publish
   * after the flush then throws), or later (nats.js gives up after
   * repeated authorization errors) — is replaced: back to connecting, with
   * backoff and jitter. Nothing on the host is touched meanwhile.
   */
  private async connectAgent(credentials: AgentCredentials): Promise<void> {
    for (;;) {
      const nc = await this.connectWith({ user: credentials.user, pass: credentials.password, name: `netfleet-agent-${credentials.host}`, inboxPrefix: credentials.inboxPrefix });
      if (!nc) return;
      try {
        await this.attach(nc, credentials);
      } catch (err) {
        this.log({ event: "connection-lost", during: "setup", error: (err as Error).message });
        if (this.nc === nc) {
          this.nc = undefined;
          this.connected = false;
        }
        await nc.close().catch(() => {});
        await this.sleep(this.backoff.next());
        continue;
      }
      void nc.closed().then(async (err) => {
        if (this.stopped || this.nc !== nc) return;
        this.connected = false;
        this.log({ event: "connection-lost", during: "run", error: err instanceof Error ? err.message : null });
        await this.sleep(this.backoff.next());
        if (!this.stopped && this.nc === nc) await this.connectAgent(credentials);
      });
      return;
    }
  }

  private async attach(nc: NatsConnection, credentials: AgentCredentials): Promise<void> {
    this.nc = nc;
    this.connected = true;
    const { site } = this.options;
    const host = credentials.host;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") this.connected = false;
        if (s.type === "reconnect") {
          this.connected = true;
          this.backoff.reset();
          this.log({ event: "reconnected" });
          this.queue(() => this.sync());
          void this.deliverUnsent();
          this.connectionHook(nc, false);
        }
      }
    })();
    const sub = nc.subscribe(kvSubject(desiredBucket(site), host));
    void (async () => {
      for await (const msg of sub) {
        let hinted = 0;
        try {
          hinted = decodeSignedAssignment(msg.subject, msg.data).revision;
        } catch {
          // Only a hint; the direct get decides.
        }
        this.queue(() => this.sync(hinted));
      }
    })();
    if (this.options.onCheck) {
      const checks = nc.subscribe(checkSubject(site, host));
      void (async () => {
        for await (const msg of checks) {
          if (!msg.reply) continue;
          const reply = await this.check(msg.subject, msg.data).catch((err: unknown) => this.checkReply(false, { ...EMPTY, results: [] }, (err as Error).message));
          msg.respond(encodeMessage(reply));
        }
      })();
    }
    this.backoff.reset();
    await nc.flush();
    const keys = await this.state.boxKeys();
    nc.publish(enrollSubject(site, host), encodeMessage({ ...(await this.facts(keys.publicKey)) }));
    if (this.timers.length === 0) {
      this.timers.push(setInterval(() => this.heartbeat(), this.options.heartbeatMs ?? 15_000));
      this.timers.push(setInterval(() => this.queue(() => this.sync()), this.options.resyncMs ?? 60_000));
    }
    this.queue(() => this.sync());
    void this.deliverUnsent();
    this.log({ event: "connected", host, servers: this.options.servers });
    this.connectionHook(nc, true);
  }

  private connectionHook(nc: NatsConnection, fresh: boolean): void {
    try {
      this.options.onConnection?.(nc, fresh);
    } catch (err) {
      this.log({ event: "connection-hook-error", error: (err as Error).message });
    }
  }

  private queue(work: () => Promise<void>): Promise<void> {
    const next = this.chain.then(() => (this.stopped ? undefined : work())).catch((err: unknown) => this.log({ event: "sync-error", error: (err as Error).message }));
    this.chain = next;
    return next;
  }

  /** Waits for queued work (tests and orderly shutdown). */
  idle(): Promise<unknown> {
    return this.chain;
  }

  private signingKey(): string {
    return this.options.signingPublicKeyPem ?? this.credentials!.signingKey.publicKeyPem;
  }

  /** Reads the stored assignment; applies it when signed, for us, and newer. A bad one is logged and the current stays. */
  private async sync(hinted = 0): Promise<void> {
    const nc = this.nc;
    const creds = this.credentials;
    if (!nc || !creds) return;
    const bucket = desiredBucket(this.options.site);
    let stored: { data: Uint8Array; seq: number } | undefined;
    // A replica may answer before it has the write that triggered the hint: ask again briefly.
    for (let attempt = 0; ; attempt++) {
      stored = await directGet(nc, directGetSubject(bucket, creds.host));
      if (!stored || attempt >= 10) break;
      let revision = 0;
      try {
        revision = decodeSignedAssignment("desired", stored.data).revision;
      } catch {
        break;
      }
      if (revision >= hinted) break;
      await this.sleep(100);
    }
    if (!stored) return;
    const floor = Math.max(this.checkpoint.current?.revision ?? 0, this.checkpoint.rolledBack?.revision ?? 0);
    let envelope: SignedAssignment;
    try {
      const decoded = decodeSignedAssignment(`kv ${bucket}/${creds.host}@${stored.seq}`, stored.data);
      // The envelope in force, unaltered: nothing to do. Its signature on anything else (another signedAt, keyId or document) is verified, and refused.
      if (inForce(decoded, this.checkpoint.current)) return;
      const undone = this.checkpoint.rolledBack;
      if (undone && decoded.revision === undone.revision && decoded.assignment.hash === undone.hash) return;
      envelope = verifySignedAssignment(decoded, this.signingKey(), floor, { site: this.options.site, host: creds.host });
    } catch (err) {
      if (err instanceof DecodeError || err instanceof AssignmentRejectedError) {
        this.log({
          event: "assignment-rejected",
          reason: err instanceof AssignmentRejectedError ? err.reason : "decode",
          error: err.message,
          keeping: this.checkpoint.current?.revision ?? 0,
          // The stream sequence of the stored value refused: which write it was.
          seq: stored.seq,
        });
        return;
      }
      throw err;
    }
    await this.apply(envelope);
  }

  private async apply(envelope: SignedAssignment): Promise<void> {
    const previous = this.checkpoint.current;
    this.checkpoint = { ...this.checkpoint, pending: envelope };
    await this.state.saveCheckpoint(this.checkpoint);
    this.log({ event: "applying", revision: envelope.revision, hash: envelope.assignment.hash });
    const outcome = await this.options.onAssignment(envelope.assignment, envelope.revision).catch((err: unknown) => failedOutcome(err));
    const report = this.reportFor(envelope, outcome, false);
    if (await this.confirm(report, this.options.confirmDeadlineMs ?? 20_000)) {
      this.checkpoint = { ...(previous ? { previous } : {}), current: envelope };
      await this.state.saveCheckpoint(this.checkpoint);
      this.publish(reportSubject(this.options.site, envelope.assignment.host), encodeMessage(report));
      this.log({ event: "applied", revision: envelope.revision, ...outcome.summary });
      return;
    }
    // Stopping is not a lockout: the pending revision is confirmed again after the next start.
    if (this.stopped) return;
    this.log({ event: "lockout-rollback", revision: envelope.revision, restoring: previous?.revision ?? 0 });
    const { pending: _dropped, ...rest } = this.checkpoint;
    this.checkpoint = { ...rest, rolledBack: { revision: envelope.revision, hash: envelope.assignment.hash } };
    await this.state.saveCheckpoint(this.checkpoint);
    const restored = await this.options.rollback(previous?.assignment).catch((err: unknown) => failedOutcome(err));
    this.checkpoint = { ...this.checkpoint, unsentReport: { ...this.reportFor(previous, restored, true), rolledBackRevision: envelope.revision } };
    await this.state.saveCheckpoint(this.checkpoint);
    void this.deliverUnsent();
  }

  private reportFor(envelope: SignedAssignment | undefined, outcome: ApplyOutcome, rolledBack: boolean): Report {
    return {
      kind: "report",
      site: this.options.site,
      host: this.credentials!.host,
      revision: envelope?.revision ?? 0,
      hash: envelope?.assignment.hash ?? null,
      rolledBack,
      summary: outcome.summary,
      results: outcome.results,
      at: new Date().toISOString(),
    };
  }

  /**
   * The lockout check: store the report in our key of the applied bucket
   * (the stream leader acknowledges) and read it back, before the deadline.
   */
  private async confirm(report: Report, deadlineMs: number): Promise<boolean> {
    if (!this.nc) return false;
    const bucket = appliedBucket(this.options.site);
    const deadline = Date.now() + deadlineMs;
    while (!this.stopped) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      // The connection in force now: it is replaced when one closes.
      const nc = this.nc;
      try {
        if (!nc || nc.isClosed()) throw new Error("not connected");
        const ack = await nc.request(kvSubject(bucket, report.host), encodeMessage(report), { timeout: Math.min(remaining, 2000) });
        const body = JSON.parse(ack.string()) as { seq?: number; error?: { description?: string } };
        if (typeof body.seq !== "number") throw new Error(body.error?.description ?? "no acknowledgement");
        const back = await directGet(nc, directGetSubject(bucket, report.host), Math.max(1, Math.min(deadline - Date.now(), 2000)));
        if (back && back.seq >= body.seq) return true;
      } catch (err) {
        this.log({ event: "confirm-retry", error: (err as Error).message });
      }
      await this.sleep(Math.min(250, Math.max(0, deadline - Date.now())));
    }
    return false;
  }

  /** Sends a report held back while NATS was unreachable; retried until it is stored. */
  private deliverUnsent(): Promise<void> {
    if (this.delivering) return this.delivering;
    this.delivering = (async () => {
      while (!this.stopped && this.checkpoint.unsentReport) {
        const report = this.checkpoint.unsentReport;
        if (this.connected && (await this.confirm(report, 5000))) {
          this.publish(reportSubject(this.options.site, report.host), encodeMessage(report));
          if (this.checkpoint.unsentReport === report) {
            const { unsentReport: _sent, ...rest } = this.checkpoint;
            this.checkpoint = rest;
            await this.state.saveCheckpoint(this.checkpoint);
          }
          this.log({ event: "report-delivered", revision: report.revision, rolledBack: report.rolledBack });
        } else {
          await this.sleep(1000);
        }
      }
    })().finally(() => (this.delivering = undefined));
    return this.delivering;
  }

  /** Answers a check request: verified like a desired assignment (signed, ours), any revision; nothing is applied. */
  private async check(subject: string, data: Uint8Array): Promise<CheckReply> {
    const request = decodeMessage(CheckRequest, subject, data);
    const creds = this.credentials!;
    if (request.host !== creds.host || request.site !== this.options.site) return this.checkReply(false, EMPTY, "check request names another host");
    let envelope: SignedAssignment;
    try {
      const decoded = decodeSignedAssignmentValue(subject, request.envelope);
      envelope = verifySignedAssignment(decoded, this.signingKey(), 0, { site: this.options.site, host: creds.host });
    } catch (err) {
      if (err instanceof DecodeError || err instanceof AssignmentRejectedError) {
        this.log({ event: "check-rejected", error: err.message });
        return this.checkReply(false, EMPTY, err.message);
      }
      throw err;
    }
    const outcome = await this.options.onCheck!(envelope.assignment);
    this.log({ event: "checked", hash: envelope.assignment.hash, ...outcome.summary });
    return this.checkReply(true, outcome);
  }

  private checkReply(ok: boolean, outcome: ApplyOutcome & { changes?: Record<string, string[]> }, error?: string): CheckReply {
    const current = this.checkpoint.current;
    return {
      kind: "check-result",
      site: this.options.site,
      host: this.credentials!.host,
      revision: current?.revision ?? 0,
      hash: current?.assignment.hash ?? null,
      ok,
      ...(error ? { error: error.slice(0, 2000) } : {}),
      summary: outcome.summary,
      results: outcome.results.map((r) => {
        const changes = outcome.changes?.[r.id];
        return changes?.length ? { ...r, changes: changes.slice(0, 200) } : r;
      }),
      at: new Date().toISOString(),
    };
  }

  /**
   * A fresh report of the current revision (e.g. after a drift-repair pass,
   * with the resources it repaired and, per resource, what changed back).
   */
  async report(outcome: ApplyOutcome, extra: { corrective?: string[]; correctiveChanges?: CorrectiveChange[] } = {}): Promise<boolean> {
    if (!this.nc || !this.credentials || !this.checkpoint.current) return false;
    const report: Report = {
      ...this.reportFor(this.checkpoint.current, outcome, false),
      ...(extra.corrective?.length ? { corrective: extra.corrective.slice(0, 10000) } : {}),
      ...(extra.corrective?.length && extra.correctiveChanges?.length ? { correctiveChanges: extra.correctiveChanges.slice(0, 200) } : {}),
    };
    const ok = await this.confirm(report, 5000);
    if (ok) this.publish(reportSubject(this.options.site, report.host), encodeMessage(report));
    return ok;
  }

  private heartbeat(): void {
    if (!this.nc || !this.credentials || !this.connected) return;
    const hb: Heartbeat = {
      kind: "heartbeat",
      site: this.options.site,
      host: this.credentials.host,
      agentVersion: this.options.agentVersion,
      revision: this.checkpoint.current?.revision ?? 0,
      hash: this.checkpoint.current?.assignment.hash ?? null,
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      at: new Date().toISOString(),
    };
    this.publish(heartbeatSubject(this.options.site, this.credentials.host), encodeMessage(hb));
  }

  /** Publishes on the connection in force; a closed one (being replaced) drops the message, the caller's resync covers it. */
  private publish(subject: string, data: Uint8Array): void {
    try {
      this.nc?.publish(subject, data);
    } catch (err) {
      this.log({ event: "publish-dropped", subject, error: (err as Error).message });
    }
  }

  /** Closes the connection. Nothing on the host is touched. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeAll();
    for (const t of this.timers) clearInterval(t);
    await this.chain.catch(() => {});
    await this.delivering;
    await this.enrollNc?.close().catch(() => {});
    await this.nc?.close().catch(() => {});
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  /** Ends every pending sleep (a welcome arrived, or stop). */
  private wakeAll(): void {
    for (const done of [...this.sleepers]) done();
  }
}

/** Reconnect delays: doubling from `base` up to `max`, each scaled by a random 0.5-1.5. */
class Backoff {
  private attempt = 0;
  private readonly base: number;
  private readonly max: number;
  constructor(base: number, max: number) {
    this.base = base;
    this.max = max;
  }
  next(): number {
    const raw = Math.min(this.max, this.base * 2 ** Math.min(this.attempt++, 20));
    return Math.round(raw * (0.5 + Math.random()));
  }
  reset(): void {
    this.attempt = 0;
  }
}

/**
 * Direct get of a key's last value (`subject`: directGetSubject(bucket, key)).
 * Resolves undefined when the key has none (404), else the stored bytes, the
 * stream sequence, and the KV operation (`PUT`; `DEL`/`PURGE` for a delete
 * marker, whose data is empty). Throws on a timeout (`timeout` ms), a
 * permission violation or any other status.
 */
export async function directGet(nc: NatsConnection, subject: string, timeout = 2000): Promise<{ data: Uint8Array; seq: number; operation: string } | undefined> {
  const msg = await nc.request(subject, new Uint8Array(0), { timeout });
  const code = msg.headers?.code ?? 0;
  if (code === 404) return undefined;
  if (code !== 0 && code !== 200) throw new Error(`direct get ${subject}: ${code} ${msg.headers?.description ?? ""}`);
  const seq = Number(msg.headers?.get("Nats-Sequence") ?? "0");
  return { data: msg.data, seq, operation: msg.headers?.get("KV-Operation") || "PUT" };
}

/** True when `decoded` is `current` in every signed field (revision, signedAt, keyId, document hash) and signature. */
function inForce(decoded: { revision: number; signedAt: string; signature?: string; keyId?: string; assignment: { hash: string } }, current: SignedAssignment | undefined): boolean {
  return (
    current !== undefined &&
    decoded.revision === current.revision &&
    decoded.signature === current.signature &&
    decoded.signedAt === current.signedAt &&
    decoded.keyId === current.keyId &&
    decoded.assignment.hash === current.assignment.hash
  );
}

function failedOutcome(err: unknown): ApplyOutcome {
  return { ...EMPTY, summary: { ...EMPTY.summary, failed: 1 }, results: [{ id: "apply", result: false, comment: (err as Error)?.message ?? String(err) }] };
}
