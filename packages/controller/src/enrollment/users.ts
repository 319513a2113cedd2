import PQueue from "p-queue";
import type { Host } from "@netfleet/shared";
import type { NatsUser } from "../nats/config.ts";
import { agentUser, controllerUser, enrollmentUser } from "../nats/permissions.ts";
import type { CredentialStore } from "../store/credentials.ts";

/** Where the server's static users are kept (our NatsServer, or anything that rewrites a config and reloads). */
export interface UserDirectory {
  /** Replaces the whole user list and reloads the servers. */
  setUsers(users: NatsUser[]): Promise<void>;
}

/** What the user list is made of. */
export interface UserSyncOptions {
  site: string;
  /** The controller's own NATS user and password. */
  controller: { user: string; password: string };
  /** NATS password of the shared enrollment user. */
  enrollmentPassword: string;
  /** Inventory hosts: backends also get to publish their gateway audit. */
  hosts: readonly Host[];
  /** Agent passwords, one per approved host. */
  credentials: CredentialStore;
  /** Absent: users cannot be changed from this controller (sync refuses). */
  directory?: UserDirectory;
  /** A sync (server reload) starts at least this long after the previous one started (ms, default 250). */
  gapMs?: number;
}

/**
 * The NATS user directory as the controller wants it: the controller, the
 * enrollment user, and one user per approved agent (from the credential
 * store). `sync` writes it to the directory and reloads the servers.
 */
export class UserSync {
  private readonly options: UserSyncOptions;
  /** One sync at a time: each one rewrites the whole list and reloads. */
  private readonly reloads = new PQueue({ concurrency: 1 });
  /** The sync not started yet that later callers share. */
  private next: Promise<void> | undefined;
  private startedAt = 0;

  constructor(options: UserSyncOptions) {
    this.options = options;
  }

  /** The static users the server must know: controller, enrollment, and one per approved agent. */
  async users(): Promise<NatsUser[]> {
    const { site, controller, hosts } = this.options;
    const backends = new Set(hosts.filter((h) => h.role === "backend").map((h) => h.name));
    const agents = (await this.options.credentials.all()).map((c) => agentUser(site, c.host, c.password, { audit: backends.has(c.host) }));
    return [controllerUser(controller.user, controller.password), enrollmentUser(site, this.options.enrollmentPassword), ...agents];
  }

  /**
   * Writes the user list and reloads the servers. Calls coalesce: while one
   * sync runs, every later caller shares the single next one (which reads
   * the credentials after they were issued), so a burst of enrollments costs
   * two reloads, not one each.
   * @throws when there is no user directory, or the directory's write or reload fails.
   */
  sync(): Promise<void> {
    const directory = this.options.directory;
    if (!directory) return Promise.reject(new Error("no user directory: cannot change NATS users from this controller"));
    if (this.next) return this.next;
    const behind = this.reloads.pending > 0;
    let started = false;
    const queued = this.reloads.add(async () => {
      // The next reload waits a little after the last one: a burst of enrollments then costs one reload per
      // batch, and fewer reloads mean fewer clients caught mid-handshake (a reload re-checks every client,
      // and one that has not sent its CONNECT yet fails as User "": it connects again, with backoff).
      const gap = (this.options.gapMs ?? 250) - (Date.now() - this.startedAt);
      if (behind && gap > 0) await new Promise((r) => setTimeout(r, gap));
      // From here on the sync reads the credentials as they are: later callers need a sync of their own.
      started = true;
      this.next = undefined;
      this.startedAt = Date.now();
      await directory.setUsers(await this.users());
    });
    // A sync that started at once (none running) is not shared.
    if (!started) this.next = queued;
    return queued;
  }
}
