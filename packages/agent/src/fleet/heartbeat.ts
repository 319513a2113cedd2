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

/** A periodic timer started by {@link everyWithOffset}. */
export interface OffsetTimer {
  /** When `fn` first runs, ms after the start: in [0, periodMs). */
  readonly offsetMs: number;
  /** Stops it (the first run, if still to come, and every later one). */
  stop(): void;
}

/**
 * Runs `fn` every `periodMs`, the first time after a random offset in
 * [0, periodMs) (`random`: a source of numbers in [0, 1), Math.random by
 * default), so that agents started together (a fleet booted or reconnected
 * at once) do not all beat or resync on the same tick: their periods keep
 * their offsets apart.
 */
export function everyWithOffset(fn: () => void, periodMs: number, random: () => number = Math.random): OffsetTimer {
  const offsetMs = Math.floor(random() * periodMs);
  let interval: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    interval = setInterval(fn, periodMs);
    fn();
  }, offsetMs);
  return {
    offsetMs,
    stop() {
      clearTimeout(first);
      clearInterval(interval);
    },
  };
}
