import type { NatsConnection } from "@nats-io/transport-node";
import type { HostAssignment, HostView } from "@netfleet/shared";
import type { CheckResult } from "./check.ts";
import type { ConnectionSettings } from "./connection.ts";
import type { HostFacts } from "./host-facts.ts";
import type { PassResult } from "./pass-result.ts";

/** How a fleet member joins, what it drives on the host, and its timings. */
export interface FleetMemberOptions extends ConnectionSettings {
  site: string;
  /** The name to enroll as; defaults to the first label of the hostname. */
  hostname?: string;
  /** Where the agent keeps its enrollment key, credentials and checkpoint. */
  runDir: string;
  /** The shared enrollment user, and the site token presented in the facts. */
  enrollment: { user: string; password: string; token: string };
  /** The controller's signing key (PEM). Without it, the key in the welcome is trusted and pinned. */
  signingPublicKeyPem?: string;
  agentVersion: string;
  /**
   * Converge the host to this assignment. `options.expectObserved`: the
   * envelope applies a saved plan (SignedAssignment.plan, since protocol
   * 1.2): the pass must run nothing unless the host's observed-state hash is
   * still this one (the engine's expectObserved). Given only for the pass
   * that moves the host to that revision, never for later repairs.
   */
  onAssignment: (assignment: HostAssignment, revision: number, options: { expectObserved?: string }) => Promise<PassResult>;
  /**
   * Check mode on request of the controller (`netfleet rollout --check`):
   * what would change to reach this assignment; must run no mutating command.
   * Without it the agent does not answer check requests.
   */
  onCheck?: (assignment: HostAssignment) => Promise<CheckResult>;
  /**
   * `netfleet show HOST`: what this host has now (show/observe.ts
   * observeHost), read-only. Without it the agent does not answer show
   * requests (the controller then says the agent did not answer).
   */
  onShow?: () => Promise<HostView>;
  /** Lockout protection: converge back to the previous assignment (undefined: there was none). */
  rollback: (previous: HostAssignment | undefined) => Promise<PassResult>;
  gatherFacts?: () => Promise<HostFacts>;
  /** Heartbeat period (ms, default 15 s); the first beat comes at a random offset within it (everyWithOffset). */
  heartbeatMs?: number;
  /**
   * After an apply, NATS must be reachable again within this time (ms,
   * default 20 s), or the apply is undone. The longest wait between two
   * dials (reconnectMaxMs) is held to a quarter of it, so that a server back
   * within the deadline is dialled again well before it runs out.
   */
  confirmDeadlineMs?: number;
  /** Enrollment facts are sent again this often until welcomed (ms). */
  enrollRetryMs?: number;
  /** The desired key is read again this often even without a hint (ms, default 60 s); the first read of the period comes at a random offset within it. */
  resyncMs?: number;
  /**
   * Called with the agent's own connection once it is set up (`fresh`: a new
   * connection object, subscriptions must be made on it) and after each
   * reconnect of that connection (`fresh` false: its subscriptions carry
   * over, but what was published meanwhile was missed). Must not throw.
   */
  onConnection?: (nc: NatsConnection, fresh: boolean) => void;
  log?: (event: Record<string, unknown>) => void;
}
