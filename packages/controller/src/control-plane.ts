import { connect, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import {
  AdminReply,
  AdminRequest,
  AgentCredentials,
  CheckReply,
  adminSubject,
  checkSubject,
  signAssignment,
  type CheckRequest,
  DecodeError,
  EnrollFacts,
  Heartbeat,
  Report,
  agentInboxPrefix,
  appliedBucket,
  CORRECTIVE_MAX_VALUE_BYTES,
  correctiveBucket,
  decodeMessage,
  desiredBucket,
  encodeMessage,
  enrollSubject,
  heartbeatSubject,
  hostOfSubject,
  hostsBucket,
  kvStream,
  LEASES_MAX_VALUE_BYTES,
  leasesBucket,
  reportSubject,
  rolloutBucket,
  seal,
  welcomeContext,
  welcomeSubject,
  type HostAssignment,
  type Host,
  type ResourceWarning,
  type ResultsSummary,
  type SigningKeys,
  type Welcome,
} from "@netfleet/shared";
import { ensureAuditStream } from "./store/audit.ts";
import { AppliedView } from "./store/applied.ts";
import { NO_CORRECTIVE, readCorrective, reportWarnings, type CorrectiveStatus } from "./store/corrective.ts";
import { CredentialStore, type StoredCredential } from "./store/credentials.ts";
import { DesiredStore, type PublishResult } from "./store/desired.ts";
import { matchHost, tokenMatches } from "./enrollment/match.ts";
import { HostRegistry, type HostRecord, type HostState } from "./store/registry.ts";
import { liveValue, withRetry } from "./store/kv.ts";
import type { NatsUser } from "./nats/config.ts";
import { agentUser, agentUserName, controllerUser, enrollmentUser } from "./nats/permissions.ts";
import { RolloutLock, type LoadedRolloutState, type RolloutLease, type RolloutState, type RolloutStateWriter } from "./rollout/state.ts";

/**
 * Makes a bucket's stream refuse `Nats-Rollup` headers (nats.js creates KV
 * streams with them allowed). In a bucket where many users may each write
 * their own key, a put to one's own key with `Nats-Rollup: all` would
 * otherwise delete every other key of the bucket: permissions only name the
 * subject written to. Puts, gets and deletes of single keys do not use it.
 * @throws when the stream cannot be read or updated.
 */
export async function denyRollups(nc: NatsConnection, bucket: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(kvStream(bucket));
  if (info.config.allow_rollup_hdrs) await jsm.streams.update(kvStream(bucket), { ...info.config, allow_rollup_hdrs: false });
}

/** Where the server's static users are kept (our NatsServer, or anything that rewrites a config and reloads). */
export interface UserDirectory {
  setUsers(users: NatsUser[]): Promise<void>;
}

export interface ControlPlaneOptions {
  site: string;
  servers: string[];
  user: string;
  password: string;
  /** Inventory hosts: enrolling agents are matched against them. */
  hosts: readonly Host[];
  /** The site enrollment token an agent must present in its facts to be approved without an operator. */
  enrollmentToken: string;
  /** NATS password of the shared enrollment user (publish facts, hear welcomes). */
  enrollmentPassword: string;
  signing: SigningKeys;
  /** Agent passwords, one 0600 file per host. */
  credentialsDir: string;
  /** Needed to approve or reject: users are written there and the server reloaded. */
  userDirectory?: UserDirectory;
  /** KV replicas: 1 for a single server, 3 for the cluster. */
  replicas?: number;
  /** KV history per key (at least 5). */
  history?: number;
  /** How long publishes and registry writes retry through a failover. */
  retryMs?: number;
  /** A user sync (server reload) starts at least this long after the previous one started (default 250 ms). */
  userSyncGapMs?: number;
  /** Heartbeats update lastSeen in the registry at most this often per host. */
  lastSeenWriteMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

export interface HostStatus {
  host: string;
  inventory: boolean;
  enrolled: boolean;
  state: HostState | "unenrolled";
  reason: string | null;
  lastSeen: string | null;
  desired: { revision: number; hash: string } | null;
  applied: { revision: number; hash: string | null; rolledBack: boolean; rolledBackRevision?: number; at: string } | null;
  /** Desired and applied differ (or nothing is applied yet while something is desired). */
  drift: boolean;
  summary: ResultsSummary | null;
  failures: { id: string; comment?: string }[];
  /** Drift the agent repaired on its own (count, last, the last few with before/after): corrective-view.ts. */
  corrective: CorrectiveStatus;
  /** Warnings in the last report's resource comments (e.g. `foreign-drop:`), see warningsOf. */
  warnings: ResourceWarning[];
}

export class HostNotFoundError extends Error {
  readonly host: string;
  constructor(host: string, detail: string) {
    super(`${host}: ${detail}`);
    this.name = "HostNotFoundError";
    this.host = host;
  }
}

interface Buckets {
  desired: KV;
  hosts: KV;
  applied: KV;
  rollout: KV;
  /** DHCP leases, one key per backend (written by that backend's agent, read by every agent). */
  leases: KV;
  /** Corrective history, one key per host (written by that host's agent). */
  corrective: KV;
}

/**
 * The controller side of the control plane: buckets, the enrollment
 * service, the host registry, signed desired state, status, and the
 * rollout lock. `connect` alone serves short commands (status, publish);
 * `serve` adds the subscriptions of a long-running controller.
 */
export class ControlPlane {
  readonly nc: NatsConnection;
  readonly options: ControlPlaneOptions;
  readonly desired: DesiredStore;
  readonly registry: HostRegistry;
  readonly lock: RolloutLock;
  /** Every agent's last applied report, kept by a watch of the applied bucket (started by watchApplied). */
  readonly applied: AppliedView;
  private readonly buckets: Buckets;
  private readonly credentials: CredentialStore;
  private readonly subscriptions: Subscription[] = [];
  private readonly perHost = new Map<string, Promise<unknown>>();
  private readonly lastSeen = new Map<string, { at: string; written: number }>();
  private syncRunning: Promise<void> | undefined;
  private syncNext: Promise<void> | undefined;
  private syncStartedAt = 0;
  private readonly log: (event: Record<string, unknown>) => void;

  private constructor(nc: NatsConnection, options: ControlPlaneOptions, buckets: Buckets) {
    this.nc = nc;
    this.options = options;
    this.buckets = buckets;
    this.log = options.log ?? (() => {});
    this.desired = new DesiredStore(buckets.desired, options.signing.privateKeyPem, { retryMs: options.retryMs ?? 30_000, log: this.log });
    this.registry = new HostRegistry(buckets.hosts);
    this.lock = new RolloutLock(buckets.rollout);
    this.credentials = new CredentialStore(options.credentialsDir);
    this.applied = new AppliedView(buckets.applied, { log: this.log });
  }

  static async connect(options: ControlPlaneOptions): Promise<ControlPlane> {
    const nc = await connect({
      servers: options.servers,
      user: options.user,
      pass: options.password,
      name: `netfleet-controller-${options.site}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 250,
      // A stack trace captured for every request (to decorate a possible error) is most of the cost of a KV read at fleet scale.
      noAsyncTraces: true,
    });
    try {
      const kvm = new Kvm(nc);
      const opts = { history: Math.max(5, options.history ?? 5), replicas: options.replicas ?? 1, allow_direct: true };
      // Right after a cluster starts, a meta leader may not yet see every peer current: "no suitable peers for placement" is retried.
      const create = (name: string, o: Parameters<Kvm["create"]>[1]) => withRetry(() => kvm.create(name, o), options.retryMs ?? 30_000);
      const buckets: Buckets = {
        desired: await create(desiredBucket(options.site), opts),
        hosts: await create(hostsBucket(options.site), opts),
        applied: await create(appliedBucket(options.site), opts),
        rollout: await create(rolloutBucket(options.site), opts),
        // Only the last table of each backend matters: no history, and a bounded value.
        leases: await create(leasesBucket(options.site), { history: 1, replicas: opts.replicas, allow_direct: true, maxValueSize: LEASES_MAX_VALUE_BYTES }),
        // The value holds the history: one value per host.
        corrective: await create(correctiveBucket(options.site), { history: 1, replicas: opts.replicas, allow_direct: true, maxValueSize: CORRECTIVE_MAX_VALUE_BYTES }),
      };
      // Backends publish their gateway audit here; its limits rotate it.
      await withRetry(() => ensureAuditStream(nc, options.site, { replicas: opts.replicas }), options.retryMs ?? 30_000);
      // Buckets where agents each write their own key: a put with Nats-Rollup: all would wipe the rest.
      await denyRollups(nc, leasesBucket(options.site));
      await denyRollups(nc, appliedBucket(options.site));
      await denyRollups(nc, correctiveBucket(options.site));
      return new ControlPlane(nc, options, buckets);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  /** The static users the server must know: controller, enrollment, and one per approved agent. */
  async users(): Promise<NatsUser[]> {
    const { site } = this.options;
    const backends = new Set(this.options.hosts.filter((h) => h.role === "backend").map((h) => h.name));
    const agents = (await this.credentials.all()).map((c) => agentUser(site, c.host, c.password, { audit: backends.has(c.host) }));
    return [controllerUser(this.options.user, this.options.password), enrollmentUser(site, this.options.enrollmentPassword), ...agents];
  }

  /**
   * Writes the user list and reloads the servers. Calls coalesce: while one
   * sync runs, every later caller shares the single next one (which reads
   * the credentials after they were issued), so a burst of enrollments costs
   * two reloads, not one each.
   */
  syncUsers(): Promise<void> {
    const directory = this.options.userDirectory;
    if (!directory) return Promise.reject(new Error("no user directory: cannot change NATS users from this controller"));
    const start = (): Promise<void> => {
      this.syncStartedAt = Date.now();
      const run = (async () => directory.setUsers(await this.users()))();
      this.syncRunning = run.finally(() => {
        if (this.syncRunning === tracked) this.syncRunning = undefined;
      });
      const tracked = this.syncRunning;
      return run;
    };
    if (!this.syncRunning) return start();
    // The next reload waits a little after the last one: a burst of enrollments then costs one reload per
    // batch, and fewer reloads mean fewer clients caught mid-handshake (a reload re-checks every client,
    // and one that has not sent its CONNECT yet fails as User "": it connects again, with backoff).
    this.syncNext ??= this.syncRunning.catch(() => {}).then(async () => {
      const gap = (this.options.userSyncGapMs ?? 250) - (Date.now() - this.syncStartedAt);
      if (gap > 0) await new Promise((r) => setTimeout(r, gap));
      this.syncNext = undefined;
      return start();
    });
    return this.syncNext;
  }

  /** Subscribes to enrollments, reports and heartbeats of the site. */
  async serve(): Promise<void> {
    const { site } = this.options;
    if (this.options.userDirectory) await this.syncUsers();
    this.listen(enrollSubject(site, "*"), (msg, host) => this.onEnroll(msg, host));
    this.listen(reportSubject(site, "*"), (msg, host) => this.onReport(msg, host));
    this.listen(heartbeatSubject(site, "*"), (msg, host) => this.onHeartbeat(msg, host));
    this.serveAdmin();
    await this.nc.flush();
  }

  /** Reports only: what a rollout needs to hear results at once (the service answers enrollments). */
  async listenReports(): Promise<void> {
    this.listen(reportSubject(this.options.site, "*"), (msg, host) => this.onReport(msg, host));
    await this.nc.flush();
  }

  /**
   * What a rollout needs to hear results at once: a watch of the applied
   * bucket (every key's last report, then each new one). Resolves once the
   * current reports are all in (false: not in time; lookups then read KV).
   */
  watchApplied(): Promise<boolean> {
    return this.applied.start();
  }

  /** Operator requests (netfleet hosts approve|reject) from other controller processes. */
  private serveAdmin(): void {
    const sub = this.nc.subscribe(adminSubject(this.options.site));
    this.subscriptions.push(sub);
    void (async () => {
      for await (const msg of sub) {
        let reply: AdminReply;
        try {
          const req = decodeMessage(AdminRequest, msg.subject, msg.data);
          const record = req.action === "approve" ? await this.approve(req.host) : await this.reject(req.host);
          reply = { ok: true, record };
        } catch (err) {
          reply = { ok: false, error: (err as Error).message.slice(0, 2000) };
        }
        msg.respond(encodeMessage(reply));
      }
    })();
  }

  /** Asks the running controller service to approve or reject a host; fails when none answers. */
  async admin(action: "approve" | "reject", host: string, timeoutMs = 15_000): Promise<HostRecord> {
    const request: AdminRequest = { kind: "admin", action, host };
    let msg;
    try {
      msg = await this.nc.request(adminSubject(this.options.site), encodeMessage(request), { timeout: timeoutMs });
    } catch (err) {
      if (/no responders|503/i.test((err as Error).message)) throw new Error(`no controller service answers for site ${this.options.site}: start netfleet serve first`);
      throw err;
    }
    const reply = decodeMessage(AdminReply, "admin reply", msg.data);
    if (!reply.ok) throw new HostNotFoundError(host, (reply.error ?? "refused").replace(new RegExp(`^${host}: `), ""));
    return reply.record as HostRecord;
  }

  /**
   * Check mode on one host: the agent runs a check-mode reconcile of this
   * (signed) assignment against the live host and says what would change.
   */
  async check(assignment: HostAssignment, timeoutMs = 60_000): Promise<CheckReply> {
    const current = await this.desired.read(assignment.host).catch(() => undefined);
    const envelope = signAssignment(assignment, (current?.envelope.revision ?? 0) + 1, this.options.signing.privateKeyPem);
    const request: CheckRequest = { kind: "check", site: this.options.site, host: assignment.host, envelope };
    const msg = await this.nc.request(checkSubject(this.options.site, assignment.host), encodeMessage(request), { timeout: timeoutMs });
    return decodeMessage(CheckReply, `check ${assignment.host}`, msg.data);
  }

  private listen(subject: string, handle: (msg: Msg, host: string) => Promise<void>): void {
    const sub = this.nc.subscribe(subject);
    this.subscriptions.push(sub);
    void (async () => {
      for await (const msg of sub) {
        const host = hostOfSubject(msg.subject);
        if (!host) continue;
        this.serial(host, () =>
          handle(msg, host).catch((err: unknown) => {
            const error = err instanceof Error ? err.message : String(err);
            this.log({ event: err instanceof DecodeError ? "bad-message" : "handler-error", subject: msg.subject, error });
          }),
        );
      }
    })();
  }

  /** Messages of one host are handled in order, one at a time. */
  private serial<T>(host: string, work: () => Promise<T>): Promise<T> {
    const next = (this.perHost.get(host) ?? Promise.resolve()).then(work, work);
    this.perHost.set(host, next.catch(() => {}));
    return next;
  }

  private async onEnroll(msg: Msg, subjectHost: string): Promise<void> {
    const facts = decodeMessage(EnrollFacts, msg.subject, msg.data);
    if (facts.site !== this.options.site) throw new DecodeError(msg.subject, "site", `facts are for site ${facts.site}`);
    const match = matchHost(facts, this.options.hosts);
    if (subjectHost !== facts.hostname && !(match.kind === "matched" && match.host === subjectHost)) {
      throw new DecodeError(msg.subject, "hostname", `published as ${subjectHost} but claims ${facts.hostname}`);
    }
    const tokenOk = tokenMatches(facts.token, this.options.enrollmentToken);
    const key = match.kind === "matched" ? match.host : facts.hostname;
    const { token: _token, ...stored } = facts;
    const now = new Date().toISOString();
    const current = await this.registry.get(key);
    const base = {
      host: key,
      inventory: match.kind === "matched",
      matchedBy: match.kind === "matched" ? match.matchedBy : null,
      facts: stored,
      claimKey: facts.publicKey,
      lastSeen: now,
      firstSeen: current?.firstSeen ?? now,
    };

    if (current?.state === "approved") {
      const sameAgent = current.approvedKey === facts.publicKey;
      // A claim by another key (anyone holding the join token's id can send one) is recorded as a claim only:
      // the facts, match and last-seen time stay those the approved agent reported.
      await this.registry.mutate(key, (cur) =>
        cur && (sameAgent
          ? { ...cur, ...base, reason: null }
          : { ...cur, claimKey: facts.publicKey, reason: "a new agent key claims this host; approve it to hand the host over" }),
      );
      this.log({ event: "enroll", host: key, state: "approved", again: true, sameAgent });
      // An agent that missed its welcome asks again with the same key.
      if (sameAgent) {
        const credential = await this.credentials.get(key);
        if (credential) this.sendWelcome(facts.hostname, credential);
      }
      return;
    }
    if (current?.state === "rejected") {
      await this.registry.mutate(key, (cur) => cur && { ...cur, ...base });
      this.log({ event: "enroll", host: key, state: "rejected" });
      return;
    }
    const reason =
      match.kind === "conflict" ? match.reason
      : match.kind === "none" ? "no inventory host has this hostname or management MAC"
      : tokenOk ? null
      : "wrong enrollment token";
    await this.registry.mutate(key, (cur) => ({ ...base, state: "quarantined", reason: reason ?? "approving", approvedKey: null, approvedAt: null, firstSeen: cur?.firstSeen ?? now }));
    this.log({ event: "enroll", host: key, claimed: facts.hostname, matchedBy: base.matchedBy, state: reason ? "quarantined" : "approving", reason });
    if (reason === null) await this.grant(key);
  }

  private async onReport(msg: Msg, host: string): Promise<void> {
    const report = decodeMessage(Report, msg.subject, msg.data);
    if (report.host !== host || report.site !== this.options.site) throw new DecodeError(msg.subject, "host", "report names another host or site");
    this.seen(host, report.at);
    this.applied.offer(report);
  }

  private async onHeartbeat(msg: Msg, host: string): Promise<void> {
    const hb = decodeMessage(Heartbeat, msg.subject, msg.data);
    if (hb.host !== host || hb.site !== this.options.site) throw new DecodeError(msg.subject, "host", "heartbeat names another host or site");
    const written = this.seen(host, hb.at);
    if (Date.now() - written >= (this.options.lastSeenWriteMs ?? 30_000)) {
      await this.registry.mutate(host, (cur) => cur && { ...cur, lastSeen: hb.at });
      this.lastSeen.set(host, { at: hb.at, written: Date.now() });
    }
  }

  private seen(host: string, at: string): number {
    const prev = this.lastSeen.get(host);
    this.lastSeen.set(host, { at: prev && prev.at > at ? prev.at : at, written: prev?.written ?? 0 });
    return prev?.written ?? 0;
  }

  /** Approves a host (quarantined, or with a pending claim by a new agent key): new credentials, sealed to the claiming agent. */
  approve(host: string): Promise<HostRecord> {
    return this.serial(host, async () => {
      const record = await this.registry.get(host);
      if (!record) throw new HostNotFoundError(host, "has not enrolled");
      if (!record.inventory) throw new HostNotFoundError(host, "matches no inventory host (by hostname or management MAC); add it to the inventory first");
      return this.grant(host);
    });
  }

  /** Refuses a host: its credentials are revoked at once (the server drops its connection on reload). */
  reject(host: string): Promise<HostRecord> {
    return this.serial(host, async () => {
      if (!(await this.registry.get(host))) throw new HostNotFoundError(host, "has not enrolled");
      await this.credentials.revoke(host);
      await this.syncUsers();
      const record = await this.registry.mutate(host, (cur) => cur && { ...cur, state: "rejected", reason: "rejected by operator", approvedKey: null, approvedAt: null });
      this.log({ event: "rejected", host });
      return record!;
    });
  }

  private async grant(host: string): Promise<HostRecord> {
    const record = await this.registry.get(host);
    if (!record) throw new HostNotFoundError(host, "has not enrolled");
    const credential = await this.credentials.issue(host, agentUserName(this.options.site, host), record.claimKey);
    await this.syncUsers();
    const approved = await this.registry.mutate(host, (cur) => cur && {
      ...cur,
      state: "approved",
      reason: null,
      approvedKey: credential.agentKey,
      approvedAt: new Date().toISOString(),
    });
    this.sendWelcome(record.facts.hostname, credential);
    this.log({ event: "approved", host, matchedBy: record.matchedBy });
    return approved!;
  }

  private sendWelcome(claimedName: string, credential: StoredCredential): void {
    const { site, signing } = this.options;
    const content: AgentCredentials = {
      site,
      host: credential.host,
      user: credential.user,
      password: credential.password,
      inboxPrefix: agentInboxPrefix(site, credential.host),
      signingKey: { keyId: signing.keyId, publicKeyPem: signing.publicKeyPem },
    };
    const box = seal(credential.agentKey, JSON.stringify(content), welcomeContext(site, claimedName));
    const welcome: Welcome = { kind: "welcome", site, hostname: claimedName, ...box };
    this.nc.publish(welcomeSubject(site, claimedName), encodeMessage(welcome));
  }

  /**
   * Signs and writes a host's assignment with compare-and-set; see
   * DesiredStore.publish. The revision goes above the one in the host's
   * applied report, whatever the key holds (junk, or an older envelope).
   */
  publish(assignment: HostAssignment, options: { basedOn?: number; force?: boolean } = {}): Promise<PublishResult> {
    if (assignment.site !== this.options.site) throw new Error(`assignment is for site ${assignment.site}, not ${this.options.site}`);
    // The agent's own report says which revision it runs: the next one goes above it, whatever the key holds.
    const floor = async () => {
      const report = await this.lastApplied(assignment.host).catch(() => undefined);
      const highest = Math.max(report?.revision ?? 0, report?.rolledBackRevision ?? 0);
      return Number.isSafeInteger(highest + 1) ? highest : 0;
    };
    return this.desired.publish(assignment, { ...options, floor });
  }

  async appliedReport(host: string): Promise<Report | undefined> {
    const entry = liveValue(await this.buckets.applied.get(host));
    return entry ? decodeMessage(Report, `kv ${entry.bucket}/${entry.key}`, entry.value) : undefined;
  }

  /** The host's last applied report: from the watch when it runs, else read from KV. */
  async lastApplied(host: string): Promise<Report | undefined> {
    return this.applied.ready ? this.applied.get(host) : this.appliedReport(host);
  }

  /**
   * Resolves with the agent's report once it has applied (or rolled back)
   * `revision` or later: heard from the applied watch or the report
   * subject; hosts that wait long are read from KV by one shared sweep.
   */
  waitForApplied(host: string, revision: number, timeoutMs: number): Promise<Report> {
    return this.applied.wait(host, revision, timeoutMs, (h) => this.appliedReport(h));
  }

  /** One row per inventory or enrolled host, sorted by name. */
  async status(): Promise<HostStatus[]> {
    // Right after a failover the streams may still be electing leaders: reads are retried like writes.
    const records = new Map((await withRetry(() => this.registry.list(), this.options.retryMs ?? 30_000)).map((r) => [r.host, r]));
    const inventory = new Set(this.options.hosts.map((h) => h.name));
    const names = [...new Set([...inventory, ...records.keys()])].sort();
    const rows: HostStatus[] = [];
    for (const host of names) {
      const record = records.get(host);
      const desiredEntry = await withRetry(() => this.desired.read(host), 10_000).catch(() => undefined);
      const report = await withRetry(() => this.appliedReport(host), 10_000).catch(() => undefined);
      const corrective = await withRetry(() => readCorrective(this.buckets.corrective, { site: this.options.site, host }), 10_000).catch(
        (err: unknown): CorrectiveStatus => ({ ...NO_CORRECTIVE, error: (err as Error).message }),
      );
      const desired = desiredEntry ? { revision: desiredEntry.envelope.revision, hash: desiredEntry.envelope.assignment.hash } : null;
      const applied = report
        ? { revision: report.revision, hash: report.hash, rolledBack: report.rolledBack, ...(report.rolledBackRevision ? { rolledBackRevision: report.rolledBackRevision } : {}), at: report.at }
        : null;
      const seen = [record?.lastSeen, report?.at, this.lastSeen.get(host)?.at].filter((s): s is string => !!s).sort().at(-1) ?? null;
      rows.push({
        host,
        inventory: inventory.has(host),
        enrolled: record !== undefined,
        state: record?.state ?? "unenrolled",
        reason: record?.reason ?? null,
        lastSeen: seen,
        desired,
        applied,
        drift: desired !== null && (applied === null || applied.hash !== desired.hash || applied.revision !== desired.revision),
        summary: report?.summary ?? null,
        failures: (report?.results ?? []).filter((r) => r.result === false).map((r) => ({ id: r.id, ...(r.comment ? { comment: r.comment } : {}) })),
        corrective,
        warnings: reportWarnings(report),
      });
    }
    return rows;
  }

  acquireLock(owner: string): Promise<RolloutLease> {
    return this.lock.acquire(owner);
  }

  releaseLock(lease: RolloutLease): Promise<void> {
    return this.lock.release(lease);
  }

  loadRolloutState(options: { withHosts?: boolean } = {}): Promise<LoadedRolloutState | undefined> {
    return this.lock.loadState(options);
  }

  /** Writes a rollout's state on from `loaded` (undefined: no record yet), refusing records over the server's max_payload. */
  rolloutStateWriter(loaded: { revision: number; shardRevisions?: number[] } | undefined): RolloutStateWriter {
    return this.lock.writer(loaded, this.nc.info?.max_payload);
  }

  saveRolloutState(state: RolloutState, lastRevision: number): Promise<number> {
    return this.lock.saveState(state, lastRevision);
  }

  async close(): Promise<void> {
    for (const s of this.subscriptions) s.unsubscribe();
    this.applied.stop();
    await Promise.allSettled(this.perHost.values());
    await this.nc.drain().catch(() => this.nc.close());
  }
}
