export { AgentClient, directGet, type AgentClientOptions, type ApplyOutcome } from "./agent-client.ts";
export { AgentState, type Checkpoint } from "./agent-state.ts";
export { gatherHostFacts, parseLinks, readTool, type HostFacts, type ReadTool } from "./host-facts.ts";
export { outcomeOf } from "./outcome.ts";
export { NatsAgent, AGENT_VERSION, type NatsAgentOptions } from "./nats-agent.ts";
export { SimulatedHostRunner, type SimulatedHostOptions } from "./simulated-host.ts";
export { LeasePublisher, type LeasePublisherOptions } from "./lease-publisher.ts";
export { LeaseFollower, networkLeasesPath, writeAtomic, type LeaseFollowerOptions } from "./lease-follower.ts";
export { AuditCollector, auditSources, type AuditCollectorOptions, type AuditSource } from "./audit-collector.ts";
