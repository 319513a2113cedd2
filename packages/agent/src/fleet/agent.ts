import { hostname as osHostname } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import PQueue from "p-queue";
import pRetry from "p-retry";
import {
  DNS_LABEL,
  encodeMessage,
  enrollSubject,
  reportSubject,
  type AgentCredentials,
  type CorrectiveChange,
  type Report,
  type SignedAssignment,
} from "@netfleet/shared";
import { Backoff, DEFAULT_RECONNECT_MAX_MS, connectNats, pause, retrySchedule } from "./connection.ts";
import { readDesired, watchDesired, SigningTrust, type DesiredWrite } from "./desired.ts";
import { answerRekeys, enroll, enrollFacts, type Claim } from "./enroll.ts";
import { everyWithOffset, heartbeat, type OffsetTimer } from "./heartbeat.ts";
import { confirmReport } from "./lockout.ts";
import type { FleetMemberOptions } from "./options.ts";
import { failedPassResult, passReport, planRefused, type PassResult } from "./pass-result.ts";
import { answerChecks } from "./responders.ts";
import { answerShows } from "./show.ts";
import { AgentState, type Checkpoint } from "./state.ts";

export type { FleetMemberOptions } from "./options.ts";

/**
 * The agent as a fleet member: enrolls (enroll.ts), connects with its own
 * credentials (connection.ts), watches its one desired key (desired.ts),
 * applies only a signed, newer assignment for this host, confirms each
 * apply with a JetStream round trip or undoes it (lockout.ts), answers
 * check and show requests (check.ts, show.ts), heartbeats (heartbeat.ts) and keeps its
 * checkpoint (state.ts). Everything that reads or writes the checkpoint —
 * syncs, applies, rollbacks, report deliveries — runs on one serial queue.
 * It calls the host (onAssignment, rollback, onCheck); the host never calls
 * back into it except through report(), which is queued too. Disconnects
 * never tear anything down.
 */
export class FleetMember {
  private readonly options: FleetMemberOptions;
  private readonly state: AgentState;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly claim: Claim;
  private readonly queue = new PQueue({ concurrency: 1 });
  private readonly stopping = new AbortController();
  private readonly backoff: Backoff;
  private readonly timers: OffsetTimer[] = [];
  private readonly startedAt = Date.now();
  private credentials: AgentCredentials | undefined;
  private checkpoint: Checkpoint = {};
  private connection: NatsConnection | undefined;
  private connected = false;
  private deliveryQueued = false;
  /**
   * Counts the writes heard on the desired key, and every connection change (a write may have been missed
   * meanwhile): a heard write is applied without reading the key only while this is still what it was when the
   * write was heard (sync), so a write queued behind a long apply never overtakes a later one.
   */
  private heard = 0;

  constructor(options: FleetMemberOptions) {
    this.options = options;
    this.state = new AgentState(options.runDir);
    this.log = options.log ?? (() => {});
    const deadline = options.confirmDeadlineMs ?? 20_000;
    this.backoff = new Backoff({ ...options, reconnectMaxMs: Math.min(options.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS, Math.max(1, Math.floor(deadline / 4))) });
    const name = options.hostname ?? osHostname().split(".")[0]!.toLowerCase();
    if (!DNS_LABEL.test(name)) throw new Error(`hostname ${JSON.stringify(name)} is not a DNS label; give the agent a host name`);
    this.claim = { site: options.site, hostname: name, token: options.enrollment.token, agentVersion: options.agentVersion, ...(options.gatherFacts ? { gatherFacts: options.gatherFacts } : {}) };
  }

  /** The inventory host name once enrolled. */
  get host(): string | undefined {
    return this.credentials?.host;
  }

  /** The assignment in force (from the checkpoint at start): what a daemon should start with. */
  get current(): SignedAssignment | undefined {
    return this.checkpoint.current;
  }

  /** The revision lockout protection last undid (it is not applied again). */
  get lastRolledBack(): { revision: number; hash: string } | undefined {
    return this.checkpoint.rolledBack;
  }

  /** The agent's own connection in force (undefined before it is set up, or while one is replaced). */
  get nc(): NatsConnection | undefined {
    return this.connection;
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Resolves once connected with the agent's own credentials (after enrollment), or when stopped first. */
  async start(): Promise<void> {
    this.checkpoint = await this.state.recoverCheckpoint(this.log);
    this.credentials = await this.state.credentials();
    if (!this.credentials) {
      const { user, password } = this.options.enrollment;
      this.credentials = await enroll({ claim: this.claim, user, password, connection: this.options, backoff: this.backoff, state: this.state, ...(this.options.enrollRetryMs !== undefined ? { retryMs: this.options.enrollRetryMs } : {}), signal: this.stopping.signal, log: this.log });
    }
    if (!this.credentials || this.stopped) return;
    await this.connect(this.credentials);
  }

  /**
   * Connects with the agent's own credentials and sets the connection up.
   * A connection that closes under us — while being set up (a server
   * reload can drop a client that has not finished connecting) or later
   * (nats.js gives up after repeated authorization errors) — is replaced,
   * after the next wait of the reconnect schedule (Backoff). Nothing on the
   * host is touched meanwhile.
   */
  private async connect(initial: AgentCredentials): Promise<void> {
    const attempt = async () => {
      // The latest credentials on every attempt: `netfleet hosts rekey` replaces them (answerRekeys), and the server then refuses the old ones.
      const credentials = this.credentials ?? initial;
      const auth = { user: credentials.user, pass: credentials.password, name: `netfleet-agent-${credentials.host}`, inboxPrefix: credentials.inboxPrefix };
      const nc = await connectNats(this.options, auth, this.backoff, this.stopping.signal);
      if (!nc) return undefined;
      try {
        await this.attach(nc, credentials);
        return nc;
      } catch (err) {
        if (this.connection === nc) this.connection = undefined;
        this.connected = false;
        await nc.close().catch(() => {});
        throw new Error(`connection lost during setup: ${(err as Error).message}`);
      }
    };
    let nc: NatsConnection | undefined;
    try {
      nc = await pRetry(attempt, retrySchedule(this.backoff, this.stopping.signal, (error) => this.log({ event: "connection-lost", during: "setup", error: error.message })));
    } catch (err) {
      if (this.stopped) return;
      throw err;
    }
    if (!nc) return;
    void nc
      .closed()
      .then(async (err) => {
        if (this.stopped || this.connection !== nc) return;
        this.connected = false;
        this.log({ event: "connection-lost", during: "run", error: err instanceof Error ? err.message : null });
        await pause(this.backoff.next(), this.stopping.signal);
        if (!this.stopped && this.connection === nc) await this.connect(this.credentials ?? initial);
      })
      .catch((err: unknown) => this.log({ event: "reconnect-failed", error: (err as Error).message }));
  }

  private async attach(nc: NatsConnection, credentials: AgentCredentials): Promise<void> {
    this.connection = nc;
    this.connected = true;
    this.heard++;
    const { site } = this.options;
    const host = credentials.host;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") {
          this.connected = false;
          this.heard++;
        }
        if (s.type === "reconnect") {
          this.connected = true;
          this.backoff.reset();
          this.log({ event: "reconnected" });
          // At once, not at the next period: a rollout waiting for this host's confirmation may have missed its report
          // while NATS was away (core NATS), and the heartbeat carries the revision the agent runs (store/applied.ts).
          this.beat();
          this.sync();
          this.deliverUnsent();
          this.connectionHook(nc, false);
        }
      }
    })();
    watchDesired(nc, site, host, {
      written: (write) => this.sync({ write, heard: ++this.heard }),
      word: (revision) => this.sync(revision),
      // A controller before nf.<site>.stored does not let agents hear its words: every write is then read, as before.
      refused: (error) => this.log({ event: "desired-subscription-refused", error }),
    });
    // `netfleet hosts rekey`: new credentials sealed to this agent's key are kept, and used by the next connection.
    answerRekeys(nc, site, host, await this.state.boxKeys(), async (c) => {
      await this.state.saveCredentials(c);
      this.credentials = c;
    }, this.log);
    if (this.options.onCheck) {
      const onCheck = this.options.onCheck;
      answerChecks(nc, { site, host, log: this.log }, async () => ({ signingKeyPem: await this.signingTrust().keys(), current: this.checkpoint.current, run: onCheck }));
    }
    if (this.options.onShow) {
      const onShow = this.options.onShow;
      answerShows(nc, { site, host, log: this.log }, async () => ({ current: this.checkpoint.current, observe: onShow }));
    }
    await nc.flush();
    const keys = await this.state.boxKeys();
    nc.publish(enrollSubject(site, host), encodeMessage(await enrollFacts(this.claim, keys.publicKey, host)));
    if (this.timers.length === 0 && !this.stopped) {
      // Random offsets: a fleet that connects at once (a boot, a server restart) beats and resyncs spread over the period.
      this.timers.push(everyWithOffset(() => this.beat(), this.options.heartbeatMs ?? 15_000));
      this.timers.push(everyWithOffset(() => this.sync(), this.options.resyncMs ?? 60_000));
    } else {
      // A connection in place of one closed for good: beat at once, as after a reconnect.
      this.beat();
    }
    this.sync();
    this.deliverUnsent();
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

  /** Queues work on the one serial queue; its error is logged, never thrown. */
  private enqueue(work: () => Promise<void>, what = "sync-error"): Promise<void> {
    const task = async (): Promise<void> => {
      if (!this.stopped) await work();
    };
    return this.queue.add(task).catch((err: unknown) => this.log({ event: what, error: (err as Error).message }));
  }

  /** Waits for queued work (tests and orderly shutdown). */
  idle(): Promise<void> {
    return this.queue.onIdle();
  }
  private trust: SigningTrust | undefined;

  /** The controller keys this agent trusts: the pinned one, plus those learned from the signed chain (desired.ts SigningTrust). */
  private signingTrust(): SigningTrust {
    return (this.trust ??= new SigningTrust({ runDir: this.options.runDir, site: this.options.site, pinnedKeyPem: this.signingKey(), log: this.log }));
  }


  private signingKey(): string {
    return this.options.signingPublicKeyPem ?? this.credentials!.signingKey.publicKeyPem;
  }

  /**
   * Queues a judgement of the stored assignment: applied when signed, for us, and newer; a bad one is logged and the
   * current stays. `from`: a write the controller said the bucket stored, with its bytes (desired.ts watchDesired),
   * and the `heard` count it got; or the revision a word without the bytes named (0: none, a resync). A stored
   * write it would apply is applied as heard, with no read, unless another write was heard or the connection
   * changed since (the key may hold something newer: a revert, a delete); any other write, a word without bytes
   * and a resync read the key (readDesired), whose value decides: a refusal is logged with the stream sequence of
   * what is stored.
   */
  private sync(from: { write: DesiredWrite; heard: number } | number = 0): void {
    void this.enqueue(async () => {
      const nc = this.connection;
      const creds = this.credentials;
      if (!nc || !creds) return;
      const where = { site: this.options.site, host: creds.host };
      if (typeof from !== "number") {
        const { write } = from;
        const verdict = await this.signingTrust().judge(nc, { data: write.data, seq: 0, operation: "PUT", ...(write.json ? { json: write.json } : {}) }, this.checkpoint, where);
        if (this.stopped) return;
        if (verdict.action === "apply" && this.heard === from.heard) {
          await this.apply(verdict.envelope);
          return;
        }
      }
      const hinted = typeof from === "number" ? from : (from.write.revision ?? 0);
      const stored = await readDesired(nc, this.options.site, creds.host, hinted, this.stopping.signal);
      if (!stored) return;
      const verdict = await this.signingTrust().judge(nc, stored, this.checkpoint, where);
      if (verdict.action === "reject") {
        // seq: the stream sequence of the stored value refused, which write it was.
        this.log({ event: "assignment-rejected", reason: verdict.reason, error: verdict.error, keeping: this.checkpoint.current?.revision ?? 0, seq: stored.seq });
      } else if (verdict.action === "apply") {
        await this.apply(verdict.envelope);
      }
    });
  }

  private async save(checkpoint: Checkpoint): Promise<void> {
    this.checkpoint = checkpoint;
    await this.state.saveCheckpoint(checkpoint);
  }

  /** pending.json for `envelope` (AgentState.markPending); a failure is logged, never thrown: the marker only feeds a log line at the next start. */
  private markPending(envelope: SignedAssignment): void {
    try {
      this.state.markPending({ revision: envelope.revision, hash: envelope.assignment.hash });
    } catch (err) {
      this.log({ event: "pending-mark-failed", revision: envelope.revision, error: (err as Error).message });
    }
  }

  /** The lockout confirmation of `report` (lockout.ts confirmReport): its encoded bytes once stored, for the report's publish; undefined when not confirmed. */
  private async confirm(report: Report, deadlineMs: number): Promise<Uint8Array | undefined> {
    const data = encodeMessage(report);
    return (await confirmReport(() => this.connection, this.options.site, report.host, data, deadlineMs, this.stopping.signal, this.log)) ? data : undefined;
  }

  /** Applies, then confirms within the deadline; else restores the previous assignment and keeps the report for later delivery. */
  private async apply(envelope: SignedAssignment): Promise<void> {
    const previous = this.checkpoint.current;
    // The pending revision is a marker beside the checkpoint (pending.json, no fsync, no rename): after a crash or a
    // stop in the middle, the next start is the same with or without it (start() goes on from `current`; the revision
    // is fetched, applied and confirmed again); it only adds the `unconfirmed-revision-dropped` log line. The
    // checkpoint itself is written once per apply, when the apply is settled (confirmed, undone or refused).
    this.markPending(envelope);
    // release: which controller release signed it (mid-upgrade, an operator sees who wrote what a host applies).
    this.log({ event: "applying", revision: envelope.revision, hash: envelope.assignment.hash, ...(envelope.release ? { release: envelope.release } : {}) });
    const pass = await this.options.onAssignment(envelope.assignment, envelope.revision, envelope.plan ? { expectObserved: envelope.plan.observed } : {}).catch(failedPassResult);
    const report = this.reportFor(envelope, pass, false);
    if (envelope.plan && planRefused(pass)) return this.refusePlan(envelope, report);
    const confirmed = await this.confirm(report, this.options.confirmDeadlineMs ?? 20_000);
    if (confirmed) {
      await this.save({ ...(previous ? { previous } : {}), current: envelope });
      this.publish(reportSubject(this.options.site, envelope.assignment.host), confirmed);
      this.log({ event: "applied", revision: envelope.revision, ...pass.summary });
      return;
    }
    // Stopping is not a lockout: the pending revision is confirmed again after the next start.
    if (this.stopped) return;
    this.log({ event: "lockout-rollback", revision: envelope.revision, restoring: previous?.revision ?? 0 });
    await this.save({ ...this.checkpoint, rolledBack: { revision: envelope.revision, hash: envelope.assignment.hash } });
    const restored = await this.options.rollback(previous?.assignment).catch(failedPassResult);
    await this.save({ ...this.checkpoint, unsentReport: { ...this.reportFor(previous, restored, true), rolledBackRevision: envelope.revision } });
    this.deliverUnsent();
  }

  /**
   * A saved plan refused (the host changed since the plan; nothing ran):
   * the assignment in force stays (checkpoint `current` is not moved), the
   * refused revision is kept as `rolledBack` so that it is not applied again
   * (judgeDesired keeps it out) until a newer revision comes, and the failed
   * pass is reported for that revision, at once or, with NATS unreachable,
   * later (deliverUnsent). Nothing is undone: nothing was done.
   */
  private async refusePlan(envelope: SignedAssignment, report: Report): Promise<void> {
    await this.save({ ...this.checkpoint, rolledBack: { revision: envelope.revision, hash: envelope.assignment.hash } });
    this.log({ event: "plan-refused", revision: envelope.revision, keeping: this.checkpoint.current?.revision ?? 0 });
    const confirmed = await this.confirm(report, this.options.confirmDeadlineMs ?? 20_000);
    if (confirmed) {
      this.publish(reportSubject(this.options.site, envelope.assignment.host), confirmed);
      return;
    }
    if (this.stopped) return;
    await this.save({ ...this.checkpoint, unsentReport: report });
    this.deliverUnsent();
  }

  private reportFor(envelope: SignedAssignment | undefined, pass: PassResult, rolledBack: boolean): Report {
    return passReport({ site: this.options.site, host: this.credentials!.host }, envelope, pass, rolledBack);
  }

  /** Queues delivery of a report held back while NATS was unreachable; tried again a second later until it is stored. */
  private deliverUnsent(): void {
    if (this.deliveryQueued || !this.checkpoint.unsentReport) return;
    this.deliveryQueued = true;
    let retry = false;
    void this.enqueue(async () => {
      this.deliveryQueued = false;
      const report = this.checkpoint.unsentReport;
      if (!report) return;
      const confirmed = this.connected ? await this.confirm(report, 5000) : undefined;
      if (!confirmed) {
        retry = true;
        return;
      }
      this.publish(reportSubject(this.options.site, report.host), confirmed);
      if (this.checkpoint.unsentReport === report) {
        const { unsentReport: _sent, ...rest } = this.checkpoint;
        await this.save(rest);
      }
      this.log({ event: "report-delivered", revision: report.revision, rolledBack: report.rolledBack });
    }, "report-error").then(async () => {
      if (!retry) return;
      await pause(1000, this.stopping.signal);
      if (!this.stopped) this.deliverUnsent();
    });
  }

  /**
   * Queues a fresh report of the current revision (e.g. after a drift-repair
   * pass, with the resources it repaired and, per resource, what changed
   * back). Resolves true once stored and published. Queued behind syncs and
   * applies: it stores into the host's applied key as a confirmation does,
   * and beside one could store the replaced revision over the new report.
   */
  report(pass: PassResult, extra: { corrective?: string[]; correctiveChanges?: CorrectiveChange[] } = {}): Promise<boolean> {
    let delivered = false;
    return this.enqueue(async () => {
      if (!this.connection || !this.credentials || !this.checkpoint.current) return;
      const report: Report = {
        ...this.reportFor(this.checkpoint.current, pass, false),
        ...(extra.corrective?.length ? { corrective: extra.corrective.slice(0, 10000) } : {}),
        ...(extra.corrective?.length && extra.correctiveChanges?.length ? { correctiveChanges: extra.correctiveChanges.slice(0, 200) } : {}),
      };
      const confirmed = await this.confirm(report, 5000);
      delivered = confirmed !== undefined;
      if (confirmed) this.publish(reportSubject(this.options.site, report.host), confirmed);
    }, "report-error").then(() => delivered);
  }

  private beat(): void {
    if (!this.connection || !this.credentials || !this.connected) return;
    const current = this.checkpoint.current;
    const hb = heartbeat({ site: this.options.site, host: this.credentials.host, agentVersion: this.options.agentVersion, revision: current?.revision ?? 0, hash: current?.assignment.hash ?? null, startedAt: this.startedAt });
    this.publish(hb.subject, hb.data);
  }

  /** Publishes on the connection in force; a closed one (being replaced) drops the message, the caller's resync covers it. */
  private publish(subject: string, data: Uint8Array): void {
    try {
      this.connection?.publish(subject, data);
    } catch (err) {
      this.log({ event: "publish-dropped", subject, error: (err as Error).message });
    }
  }

  /**
   * Stops: aborts connecting, enrolling, waits between dials and a pending
   * confirmation at once, skips queued work not started (connection.ts connectNats, lockout.ts
   * confirmReport), waits for the queued work in progress (an apply runs to
   * its end; its confirmation, aborted, is not a lockout: the revision stays
   * marked pending (pending.json), and the next start converges to the last
   * confirmed one and confirms it again), then closes the connection
   * (nats.js close() also ends a reconnect loop at once: v3.4.0
   * core/src/protocol.ts:1091-1118 cancels its sleep, and the loop then finds
   * no server, 653-671). Nothing on the host is touched.
   */
  async stop(): Promise<void> {
    this.stopping.abort();
    for (const t of this.timers) t.stop();
    await this.queue.onIdle();
    await this.connection?.close().catch(() => {});
  }
}
