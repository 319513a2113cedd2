import type { CheckReply, HostAssignment, Report } from "@netfleet/shared";
import type { ConfirmWait } from "../store/applied.ts";
import type { DesiredStore, PublishResult } from "../store/desired.ts";
import type { HostRegistry } from "../store/registry.ts";
import type { RolloutLock, RolloutStateWriter } from "./state.ts";

/** How long a rollout retries a store read or write through a NATS failover (withRetry), in milliseconds. */
export const STORE_RETRY_MS = 30_000;

/**
 * What a rollout needs from the controller's stores, and nothing more. The ControlPlane
 * satisfies it as it is; reads and writes that can fail through a NATS failover are retried
 * by the rollout (withRetry, STORE_RETRY_MS), not here.
 */
export interface RolloutStores {
  /** The site rolled out (named in events and messages). */
  readonly options: { readonly site: string };
  /** Desired entries: per host or the whole bucket in one pass, and a past revision to revert to. */
  readonly desired: Pick<DesiredStore, "read" | "readAll" | "atRevision">;
  /** Enrolled hosts: only approved ones are published to. */
  readonly registry: Pick<HostRegistry, "get" | "list">;
  /** The site's rollout lock, and the state record of its last rollout. */
  readonly lock: Pick<RolloutLock, "acquire" | "takeOver" | "renew" | "release" | "loadState">;
  /** A writer of the state record going on from `loaded` (undefined: none yet), refusing records over the server's max_payload. */
  rolloutStateWriter(loaded: { revision: number; shardRevisions?: number[] } | undefined): RolloutStateWriter;
  /**
   * Signs and writes a host's assignment, with compare-and-set on `basedOn` (StaleRevisionError when the entry moved;
   * `known`: what was read there, the envelope's revision and hash or null for none, so that it is not read again);
   * `force` signs a new revision even when the same document is desired; `plan` goes into the signed envelope
   * (the agent refuses it when its host's observation no longer hashes to `plan.observed`).
   */
  publish(assignment: HostAssignment, options?: { basedOn?: number; known?: { revision: number; hash: string } | null; force?: boolean; plan?: { observed: string } }): Promise<PublishResult>;
  /** Starts following the agents' applied reports; resolves once the current ones are in (false: not in time). */
  watchApplied(): Promise<boolean>;
  /** The host's last applied report, if any. */
  lastApplied(host: string): Promise<Report | undefined>;
  /**
   * The host's report once it has applied (or rolled back) `revision` or later; a success of `revision` with
   * `confirm.hash` only once its agent confirmed it (store/applied.ts AppliedView.wait). Rejects with
   * UnconfirmedError when that success was not confirmed within `confirm.windowMs`, with an Error after `timeoutMs`.
   */
  waitForConfirmed(host: string, revision: number, timeoutMs: number, confirm: ConfirmWait): Promise<Report>;
  /** Asks the host's agent what it would change to reach `assignment` (check mode); rejects without an agent or after `timeoutMs`. */
  check(assignment: HostAssignment, timeoutMs?: number): Promise<CheckReply>;
}
