export { ControlPlane, HostNotFoundError, type ControlPlaneOptions, type HostStatus, type UserDirectory } from "./control-plane.ts";
export { DesiredStore, StaleRevisionError, type DesiredEntry, type PublishResult } from "./desired-store.ts";
export { HostRegistry, HostRecord, HostState } from "./host-registry.ts";
export { RolloutLock, LockHeldError, LockLostError, RolloutState, type RolloutLease } from "./rollout-lock.ts";
export { CredentialStore, type StoredCredential } from "./credential-store.ts";
export { matchHost, tokenMatches, type HostMatch } from "./enrollment.ts";
export { agentUser, agentUserName, enrollmentUser, controllerUser } from "./permissions.ts";
export { NatsServer, NatsServerError, type NatsServerOptions, type NatsNode } from "./nats-server.ts";
export { renderAccounts, renderNodeConfig, NETFLEET_ACCOUNT, type NatsUser, type NatsNodeConfig, type SubjectPermission } from "./nats-config.ts";
