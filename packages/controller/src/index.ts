/**
 * @netfleet/controller: what the lab and the tests drive the controller
 * through (the CLI itself starts from src/cli.ts).
 */
export { compileSite } from "./compile/compile.ts";
export { ControlPlane } from "./control-plane.ts";
export type { HostStatus } from "./store/status.ts";
export { StaleRevisionError, publishStoredWord } from "./store/desired.ts";
export { UnconfirmedError, type ConfirmWait } from "./store/applied.ts";
export { LockHeldError, LockLostError, RolloutState, HostProgress, HOSTS_PER_SHARD, rolloutShardKey } from "./rollout/state.ts";
export { readAudit } from "./store/audit.ts";
export { enrollmentUser, controllerUser } from "./nats/permissions.ts";
export { NatsServer } from "./nats/server.ts";
export { Rollout, type RolloutOptions, type RolloutTarget } from "./rollout/rollout.ts";
export type { RolloutEvent } from "./rollout/events.ts";
export { mintHostToken, mintHostTokenWithKey, hostTokenKey, verifyHostToken, HOST_TOKEN_DEFAULT_TTL_MS, HOST_TOKEN_MAX_TTL_MS, type MintHostTokenOptions } from "./enrollment/host-tokens.ts";
