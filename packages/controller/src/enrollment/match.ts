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
  const index = hostIndex(hosts);
  const byName = index.byName.get(facts.hostname);
  const macs = new Set(facts.interfaces.flatMap((i) => (i.mac ? [i.mac.toLowerCase()] : [])));
  // In inventory order, as a scan of the hosts would find them.
  const byMac = [...new Set([...macs].flatMap((m) => index.byMac.get(m) ?? []))].sort((a, b) => index.order.get(a)! - index.order.get(b)!);
  if (byMac.length > 1) return { kind: "conflict", reason: `MACs match several hosts: ${byMac.map((h) => h.name).join(", ")}` };
  const mac = byMac[0];
  if (byName && mac && mac.name !== byName.name) {
    return { kind: "conflict", reason: `hostname matches ${byName.name} but MAC ${mac.mac} belongs to ${mac.name}` };
  }
  if (byName) return { kind: "matched", host: byName.name, matchedBy: "hostname" };
  if (mac) return { kind: "matched", host: mac.name, matchedBy: "mac" };
  return { kind: "none" };
}

/** The inventory's hosts by name and by management MAC (lower case), with their inventory order. */
interface HostIndex {
  byName: Map<string, Host>;
  byMac: Map<string, Host[]>;
  order: Map<Host, number>;
}

const indexes = new WeakMap<readonly Host[], HostIndex>();

/**
 * The index of an inventory's host list, made once per list (kept while the
 * list lives): each enroll message is matched in constant time instead of a
 * scan of every host (two scans per message were most of an enrollment's
 * controller CPU at 10,000 hosts, issue 18). The list is not expected to
 * change after it was indexed (ControlPlane keeps it as given).
 */
export function hostIndex(hosts: readonly Host[]): HostIndex {
  let index = indexes.get(hosts);
  if (!index) {
    index = { byName: new Map(), byMac: new Map(), order: new Map() };
    for (const [i, h] of hosts.entries()) {
      if (!index.byName.has(h.name)) index.byName.set(h.name, h);
      index.order.set(h, i);
      if (h.mac === undefined) continue;
      const mac = h.mac.toLowerCase();
      index.byMac.set(mac, [...(index.byMac.get(mac) ?? []), h]);
    }
    indexes.set(hosts, index);
  }
  return index;
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
