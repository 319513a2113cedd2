import type { NatsConnection } from "@nats-io/transport-node";
import type { Host, SigningKeys } from "@netfleet/shared";
import type { HostQueues } from "../nats/host-messages.ts";
import type { CredentialStore } from "../store/credentials.ts";
import type { HostRegistry } from "../store/registry.ts";
import type { EnrollmentLimits } from "./limits.ts";
import type { AcceptedToken } from "./match.ts";
import type { UserSync } from "./users.ts";

/** An operator action named a host the registry cannot act on (not enrolled, or not in the inventory). */
export class HostNotFoundError extends Error {
  readonly host: string;
  constructor(host: string, detail: string) {
    super(`${host}: ${detail}`);
    this.name = "HostNotFoundError";
    this.host = host;
  }
}

/** What the enrollment service works with. */
export interface EnrollmentServiceOptions {
  nc: NatsConnection;
  site: string;
  /** Inventory hosts: enrolling agents are matched against them. */
  hosts: readonly Host[];
  /**
   * The site's join token (`<id>.<secret>`), or the tokens accepted during a rotation (each until its
   * `notAfter`), or a function reading them (called at most once a second, so a running service picks
   * a rotation up): an agent presenting one may ask to join (a pending claim), never more.
   */
  enrollmentToken: string | readonly AcceptedToken[] | (() => Promise<readonly AcceptedToken[]>);
  /** The key id and public key handed to agents in their welcome (the private key signs assignments elsewhere). */
  signing: SigningKeys;
  registry: HostRegistry;
  /** Agent passwords; its folder also holds the host-token key (host-tokens.ts). */
  credentials: CredentialStore;
  users: UserSync;
  /** The per-host queue enrollment messages are handled in: approve and reject take their turn in it. */
  queues: HostQueues;
  log: (event: Record<string, unknown>) => void;
  /** Rate limits and caps (default DEFAULT_ENROLLMENT_LIMITS). */
  limits?: Partial<EnrollmentLimits>;
}
