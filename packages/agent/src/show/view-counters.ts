import type { ShowOvsBond } from "@netfleet/shared";
import type { RawRead } from "./read.ts";
import { parseBondShow, parseInterfaceStats, parseLacpShow, withLacp, type InterfaceStats, type LacpShow } from "./parse-counters.ts";

/** Parses a read that succeeded; undefined (and a problem named by the caller's `parsed`) when it failed or did not parse. */
type Parsed = <T>(read: RawRead, parse: (stdout: string) => T) => T | undefined;

/**
 * The counter reads of a RawObservation as view.ts attaches them to
 * bridges: Interface statistics by Interface name, bond state (with its
 * members' LACP words) by Port name. A read that is absent (an older
 * capture, a host without bonds) gives an empty map; one that failed gives
 * an empty map and a problem.
 */
export function countersOf(raw: { ovsStats?: RawRead; bondShow?: RawRead; lacpShow?: RawRead }, parsed: Parsed): { stats: Map<string, InterfaceStats>; bonds: Map<string, ShowOvsBond> } {
  const stats = (raw.ovsStats ? parsed(raw.ovsStats, parseInterfaceStats) : undefined) ?? new Map<string, InterfaceStats>();
  const lacp = (raw.lacpShow ? parsed(raw.lacpShow, parseLacpShow) : undefined) ?? new Map<string, LacpShow>();
  const bonds = new Map<string, ShowOvsBond>();
  for (const [name, bond] of (raw.bondShow ? parsed(raw.bondShow, parseBondShow) : undefined) ?? []) bonds.set(name, withLacp(bond, lacp.get(name)));
  return { stats, bonds };
}
