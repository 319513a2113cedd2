import { encodeMessage, heartbeatSubject, type Heartbeat } from "@netfleet/shared";

/** What a heartbeat says about the agent. */
export interface HeartbeatFacts {
  site: string;
  host: string;
  agentVersion: string;
  /** The revision and document hash in force (0 and null before any). */
  revision: number;
  hash: string | null;
  /** When the agent started (ms since the epoch). */
  startedAt: number;
}

/** The heartbeat message and its subject (`nf.<site>.heartbeat.<host>`), encoded by the shared protocol. */
export function heartbeat(facts: HeartbeatFacts): { subject: string; data: Uint8Array } {
  const message: Heartbeat = {
    kind: "heartbeat",
    site: facts.site,
    host: facts.host,
    agentVersion: facts.agentVersion,
    revision: facts.revision,
    hash: facts.hash,
    uptimeS: Math.round((Date.now() - facts.startedAt) / 1000),
    at: new Date().toISOString(),
  };
  return { subject: heartbeatSubject(facts.site, facts.host), data: encodeMessage(message) };
}
