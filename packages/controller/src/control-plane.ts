import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { desiredBucket, enrollSubject, kvSubject, heartbeatSubject, reportSubject, type CheckReply, type HostAssignment, type Host, type Report, type SigningKeys } from "@netfleet/shared";
import { requestAdmin, serveAdmin, type AdminAction } from "./enrollment/admin.ts";
import { EnrollmentService } from "./enrollment/service.ts";
import { UserSync, type UserDirectory } from "./enrollment/users.ts";
import { requestCheck } from "./nats/check.ts";
import type { NatsUser } from "./nats/config.ts";
import { HostQueues, HostSubscriptions } from "./nats/host-messages.ts";
import { RolloutLock, type LoadedRolloutState, type RolloutStateWriter } from "./rollout/state.ts";
import { AppliedView, type ConfirmWait } from "./store/applied.ts";
import { openBuckets, type Buckets } from "./store/buckets.ts";
import { CredentialStore } from "./store/credentials.ts";
import { DesiredStore, publishStoredWord, type PublishResult } from "./store/desired.ts";
import { agentVersionSource, agentVersionsAll } from "./store/objects.ts";
import { Presence } from "./store/presence.ts";
import { HostRegistry, type HostRecord } from "./store/registry.ts";
import { countersSource } from "./nats/show.ts";
import { readStatus, type HostStatus } from "./store/status.ts";

/** How a controller process connects, and what its services need to know. */
export interface ControlPlaneOptions {
  /** The site name (DNS label): subjects `nf.<site>.…`, buckets `nf_<site>_…`. */
  site: string;
  /** NATS server URLs (`nats://host:port`). */
  servers: string[];
  /** The controller's NATS user and password (secrets.json). */
  user: string;
  password: string;
  /** Inventory hosts: enrolling agents are matched against them. */
  hosts: readonly Host[];
  /**
   * The site enrollment token(s) an agent may present: one, or the accepted
   * list (current first; a replaced one until its notAfter, ISO 8601), see
   * acceptedEnrollmentTokens in store/home.ts; or a function giving that
   * list, which the EnrollmentService reads at most once a second (a
   * rotated token is then accepted without a restart).
   */
  enrollmentToken: string | readonly { token: string; notAfter?: string }[] | (() => Promise<readonly { token: string; notAfter?: string }[]>);
  /** NATS password of the shared enrollment user (publish facts, hear welcomes). */
  enrollmentPassword: string;
  /** The site's ed25519 key pair: assignments are signed with it, agents get the public key in their welcome. */
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
  /** Structured events (enrollments, approvals, retries, bad messages); none by default. */
  log?: (event: Record<string, unknown>) => void;
  /** How long the first dial of each server may take (nats.js `timeout`, default its 20 s). */
  dialTimeoutMs?: number;
}

/**
 * The controller side of the control plane, as wiring: one NATS
 * connection, the site's buckets, and the services composed on them
 * (stores, enrollment, user sync, presence, status, rollout lock).
 * `connect` alone serves short commands (status, publish); `serve` adds
 * the subscriptions of a long-running controller.
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
  /** The NATS user directory kept in step with the credentials (serve syncs it; enrollment, approve and reject too). */
  readonly userSync: UserSync;
  private readonly enrollment: EnrollmentService;
  private readonly presence: Presence;
  private readonly subscriptions: HostSubscriptions;
  /** What each host's agent says it runs (KV nf_<site>_agent, opened lazily, never created here). */
  private readonly agentVersions: ReturnType<typeof agentVersionSource>;

  private constructor(nc: NatsConnection, options: ControlPlaneOptions, buckets: Buckets) {
    this.nc = nc;
    this.options = options;
    this.buckets = buckets;
    const log = options.log ?? (() => {});
    const js = jetstream(nc);
    const desiredSubject = (key: string) => kvSubject(desiredBucket(options.site), key);
    this.desired = new DesiredStore(buckets.desired, options.signing.privateKeyPem, {
      retryMs: options.retryMs ?? 30_000,
      log,
      // A key that never had a value (expected last subject sequence 0): what a rollout publishes without reading first.
      createNew: async (key, value) => (await js.publish(desiredSubject(key), value, { expect: { lastSubjectSequence: 0 } })).seq,
      // The host's agent applies the value it saw written without reading it back (subjects.ts desiredStoredSubject).
      stored: (host, value, kvRevision, revision) => publishStoredWord(nc, options.site, host, value, kvRevision, revision),
    });
    this.registry = new HostRegistry(buckets.hosts);
    this.lock = new RolloutLock(buckets.rollout);
    // The report subject confirms what the applied bucket holds (a rollout's ok needs the agent's confirmation).
    this.applied = new AppliedView(buckets.applied, { log, confirmations: { nc, site: options.site } });
    const credentials = new CredentialStore(options.credentialsDir);
    this.userSync = new UserSync({
      site: options.site,
      controller: { user: options.user, password: options.password },
      enrollmentPassword: options.enrollmentPassword,
      hosts: options.hosts,
      credentials,
      ...(options.userDirectory ? { directory: options.userDirectory } : {}),
      ...(options.userSyncGapMs !== undefined ? { gapMs: options.userSyncGapMs } : {}),
    });
    const queues = new HostQueues();
    this.subscriptions = new HostSubscriptions(nc, queues, log);
    const { site, hosts, enrollmentToken, signing } = options;
    this.enrollment = new EnrollmentService({ nc, site, hosts, enrollmentToken, signing, registry: this.registry, credentials, users: this.userSync, queues, log });
    this.presence = new Presence(site, this.registry, this.applied, options.lastSeenWriteMs ?? 30_000);
    this.agentVersions = agentVersionSource(nc, site);
  }

  /**
   * Connects to the site's servers (reconnecting forever) and creates or
   * opens its buckets.
   * @throws when the servers refuse the connection or the buckets cannot be made (the connection is closed).
   */
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
      ...(options.dialTimeoutMs !== undefined ? { timeout: options.dialTimeoutMs } : {}),
    });
    try {
      const buckets = await openBuckets(nc, options.site, {
        replicas: options.replicas ?? 1,
        history: options.history ?? 5,
        retryMs: options.retryMs ?? 30_000,
        // bucket-limits: an existing bucket holds more than a new limit (the limit is then left unset).
        ...(options.log ? { log: options.log } : {}),
      });
      return new ControlPlane(nc, options, buckets);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  /** The static users the server must know: controller, enrollment, and one per approved agent. */
  users(): Promise<NatsUser[]> {
    return this.userSync.users();
  }

  /** Subscribes to enrollments, reports and heartbeats of the site, and serves `netfleet hosts approve|reject`. */
  async serve(): Promise<void> {
    const { site } = this.options;
    if (this.options.userDirectory) await this.userSync.sync();
    // The enrollment service retries store hiccups itself, after its rate limits (spent once per message).
    this.subscriptions.listen(enrollSubject(site, "*"), (msg, host) => this.enrollment.enroll(msg, host), { retry: false });
    this.subscriptions.listen(reportSubject(site, "*"), (msg, host) => this.presence.report(msg, host));
    this.subscriptions.listen(heartbeatSubject(site, "*"), (msg, host) => this.presence.heartbeat(msg, host));
    // The EnrollmentService serves every admin action (approve, reject, revoke, rekey).
    this.subscriptions.keep(serveAdmin(this.nc, site, this.enrollment, this.options.log ?? (() => {})));
    await this.nc.flush();
  }

  /**
   * What a rollout needs to hear results at once: a watch of the applied
   * bucket (every key's last report, then each new one), and the report
   * subject, where agents confirm them. Resolves once the current reports
   * are all in (false: not in time; lookups then read KV).
   */
  watchApplied(): Promise<boolean> {
    return this.applied.start();
  }

  /** Asks the running controller service to approve or reject a host; see requestAdmin. */
  admin(action: AdminAction, host: string, timeoutMs = 15_000): Promise<HostRecord> {
    return requestAdmin(this.nc, this.options.site, action, host, timeoutMs);
  }

  /** Check mode on one host; see requestCheck. */
  check(assignment: HostAssignment, timeoutMs = 60_000): Promise<CheckReply> {
    return requestCheck(this.nc, this.options.site, this.desired, this.options.signing.privateKeyPem, assignment, timeoutMs);
  }

  /** Approves a host; see EnrollmentService.approve. */
  approve(host: string): Promise<HostRecord> {
    return this.enrollment.approve(host);
  }

  /** Refuses a host; see EnrollmentService.reject. */
  reject(host: string): Promise<HostRecord> {
    return this.enrollment.reject(host);
  }

  /**
   * Signs and writes a host's assignment with compare-and-set; see
   * DesiredStore.publish. The revision goes above the one in the host's
   * applied report, whatever the key holds (junk, or an older envelope).
   * @throws Error when the assignment is for another site.
   */
  publish(assignment: HostAssignment, options: { basedOn?: number; known?: { revision: number; hash: string } | null; force?: boolean; plan?: { observed: string } } = {}): Promise<PublishResult> {
    if (assignment.site !== this.options.site) throw new Error(`assignment is for site ${assignment.site}, not ${this.options.site}`);
    return this.desired.publish(assignment, { ...options, floor: () => this.applied.running(assignment.host) });
  }

  /** The host's last applied report: from the watch when it runs, else read from KV. */
  lastApplied(host: string): Promise<Report | undefined> {
    return this.applied.last(host);
  }

  /**
   * Resolves with the agent's report once it has applied (or rolled back) `revision` or later, as stored in the applied
   * bucket (not necessarily confirmed by the agent: see waitForConfirmed); see AppliedView.wait.
   */
  waitForApplied(host: string, revision: number, timeoutMs: number): Promise<Report> {
    return this.applied.wait(host, revision, timeoutMs);
  }

  /**
   * As waitForApplied, but a success of `revision` with `confirm.hash` counts only once the agent confirmed it (its
   * report on the report subject, or a heartbeat of that revision); see AppliedView.wait.
   * @throws UnconfirmedError when it was not confirmed within `confirm.windowMs`; Error after `timeoutMs` without a report.
   */
  waitForConfirmed(host: string, revision: number, timeoutMs: number, confirm: ConfirmWait): Promise<Report> {
    return this.applied.wait(host, revision, timeoutMs, confirm);
  }

  /**
   * One row per inventory or enrolled host (those `options.limit` selects), sorted by name; see readStatus.
   * `counters`: also ask each approved host's agent for its counters summary (nats/show.ts countersSource: a show
   * request per host, 10 s each, 8 at once, 30 s in all); off for the callers that poll (serve's metrics, the dashboard).
   */
  status(options: { limit?: readonly string[]; counters?: boolean } = {}): Promise<HostStatus[]> {
    const { site, hosts } = this.options;
    return readStatus({
      ...(options.limit ? { limit: options.limit } : {}),
      site,
      hosts,
      registry: this.registry,
      desired: this.desired,
      applied: this.applied,
      corrective: this.buckets.corrective,
      lastSeen: (host) => this.presence.lastSeen(host),
      retryMs: this.options.retryMs ?? 30_000,
      agent: this.agentVersions,
      agents: () => agentVersionsAll(this.nc, site),
      ...(options.counters ? { counters: countersSource(this.nc, site) } : {}),
    });
  }

  /** The last rollout's state, if any; see RolloutLock.loadState. */
  loadRolloutState(options: { withHosts?: boolean } = {}): Promise<LoadedRolloutState | undefined> {
    return this.lock.loadState(options);
  }

  /** Writes a rollout's state on from `loaded` (undefined: no record yet), refusing records over the server's max_payload. */
  rolloutStateWriter(loaded: { revision: number; shardRevisions?: number[] } | undefined): RolloutStateWriter {
    return this.lock.writer(loaded, this.nc.info?.max_payload);
  }

  /** Ends the subscriptions and the applied watch, lets queued messages finish, and drains the connection. */
  async close(): Promise<void> {
    this.applied.stop();
    await this.subscriptions.close();
    await this.nc.drain().catch(() => this.nc.close());
  }
}
