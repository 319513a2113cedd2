export { AgentClient, type AgentClientOptions, type ApplyOutcome } from "./agent-client.ts";
export { AgentState, type Checkpoint } from "./agent-state.ts";
export { gatherHostFacts, parseLinks, readTool, type HostFacts, type ReadTool } from "./host-facts.ts";
export { outcomeOf } from "./outcome.ts";
