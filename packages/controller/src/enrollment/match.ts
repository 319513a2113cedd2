import { timingSafeEqual, createHash } from "node:crypto";
import type { EnrollFacts, Host } from "@netfleet/shared";

/** The inventory host an agent is (and by what), a name and a MAC that disagree, or none. */
export type HostMatch =
  | { kind: "matched"; host: string; matchedBy: "hostname" | "mac" }
  | { kind: "conflict"; reason: string }
  | { kind: "none" };

/**
 * Which inventory host an enrolling agent is: by its hostname, else by a
 * MAC of one of its interfaces equal to the host's management MAC. Name and
 * MAC pointing at two different hosts is a conflict, never a guess.
 */
export function matchHost(facts: Pick<EnrollFacts, "hostname" | "interfaces">, hosts: readonly Host[]): HostMatch {
  const byName = hosts.find((h) => h.name === facts.hostname);
  const macs = new Set(facts.interfaces.flatMap((i) => (i.mac ? [i.mac.toLowerCase()] : [])));
  const byMac = hosts.filter((h) => h.mac !== undefined && macs.has(h.mac.toLowerCase()));
  if (byMac.length > 1) return { kind: "conflict", reason: `MACs match several hosts: ${byMac.map((h) => h.name).join(", ")}` };
  const mac = byMac[0];
  if (byName && mac && mac.name !== byName.name) {
    return { kind: "conflict", reason: `hostname matches ${byName.name} but MAC ${mac.mac} belongs to ${mac.name}` };
  }
  if (byName) return { kind: "matched", host: byName.name, matchedBy: "hostname" };
  if (mac) return { kind: "matched", host: mac.name, matchedBy: "mac" };
  return { kind: "none" };
}

/** A join token the controller accepts, until `notAfter` (ISO 8601; none: no end). */
export interface AcceptedToken {
  token: string;
  notAfter?: string;
}

/**
 * Whether the presented token is one of the accepted site join tokens (a
 * bare string: that one token). Each comparison is constant-time (SHA-256
 * of both, timingSafeEqual); entries whose `notAfter` is at or before `now`
 * (ms) are skipped.
 */
export function tokenMatches(presented: string, accepted: string | readonly AcceptedToken[], now = Date.now()): boolean {
  const list = typeof accepted === "string" ? [{ token: accepted }] : accepted;
  const a = createHash("sha256").update(presented).digest();
  let ok = false;
  for (const t of list) {
    if (t.notAfter !== undefined && !(Date.parse(t.notAfter) > now)) continue;
    const b = createHash("sha256").update(t.token).digest();
    if (timingSafeEqual(a, b)) ok = true;
  }
  return ok;
}
