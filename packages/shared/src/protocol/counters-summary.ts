import type { ResourceWarning } from "./warnings.ts";
import type { BondSummary, CounterRise, CountersSummary } from "./counters.ts";
import type { HostView, LinkCounters } from "./show.ts";

/*
 * The counters summary an agent answers `netfleet status` with, computed
 * from its show view (counters.ts holds the wire schemas; this file, the
 * arithmetic over a view, so the schemas need nothing of show.ts).
 */

/** A baseline for the next summary: errors and drops per interface key (`bridge/name` or `name`), and when. */
export interface CounterSample {
  at: number;
  byKey: Map<string, { errors: number; drops: number }>;
}

const errorsOf = (c: LinkCounters) => c.rxErrors + c.txErrors;
const dropsOf = (c: LinkCounters) => c.rxDropped + c.txDropped;

/** Every counted interface of a view: OVS Interfaces with statistics, then kernel links that are not OVS Interfaces. */
function countedInterfaces(view: HostView): { key: string; name: string; bridge?: string; down: boolean; counters: LinkCounters }[] {
  const out: { key: string; name: string; bridge?: string; down: boolean; counters: LinkCounters }[] = [];
  const inOvs = new Set<string>();
  for (const b of view.bridges ?? []) {
    for (const p of b.ports) {
      for (const i of p.interfaces) {
        inOvs.add(i.name);
        if (i.counters) out.push({ key: `${b.name}/${i.name}`, name: i.name, bridge: b.name, down: i.linkState === "down" || i.adminState === "down", counters: i.counters });
      }
    }
  }
  for (const l of view.links) {
    if (l.name === "lo" || inOvs.has(l.name) || !l.counters) continue;
    out.push({ key: l.name, name: l.name, down: !l.up || l.state === "DOWN", counters: l.counters });
  }
  return out;
}

/** The bonds of a view: OVS ports with bond state (bond/show), and kernel bonds with their members (`master`). */
function bondsOf(view: HostView): BondSummary[] {
  const out: BondSummary[] = [];
  for (const b of view.bridges ?? []) {
    for (const p of b.ports) {
      if (!p.bond) continue;
      const s: BondSummary = {
        name: p.name,
        bridge: b.name,
        membersUp: p.bond.members.filter((m) => m.enabled).map((m) => m.name),
        membersDown: p.bond.members.filter((m) => !m.enabled).map((m) => m.name),
      };
      if (p.bond.lacpStatus !== undefined) s.lacp = p.bond.lacpStatus;
      out.push(s);
    }
  }
  for (const k of view.links.filter((l) => l.bond)) {
    const members = view.links.filter((l) => l.master === k.name);
    const up = (l: (typeof members)[number]) => (l.member?.mii ?? (l.up ? "UP" : "DOWN")).toUpperCase() === "UP";
    out.push({ name: k.name, membersUp: members.filter(up).map((m) => m.name), membersDown: members.filter((m) => !up(m)).map((m) => m.name) });
  }
  return out.slice(0, 64);
}

/**
 * The counters summary of a view, against `baseline` (the sample of an
 * earlier read, if any), and the sample to keep as the next baseline. Pure.
 * An interface absent from the baseline, or whose counters went down (it
 * was re-created), is left out of `rising`: what it gained is unknown. The
 * drops of an interface that is down now (OVS link_state or admin_state
 * down, a kernel link not up) do not count as rising: it drops whatever is
 * flooded to it, as a bridge's own internal port does all the time.
 */
export function summariseCounters(view: HostView, baseline?: CounterSample): { summary: CountersSummary; sample: CounterSample } {
  const at = Date.parse(view.at);
  const sample: CounterSample = { at, byKey: new Map() };
  const rising: CounterRise[] = [];
  let errors = 0;
  let drops = 0;
  const counted = countedInterfaces(view);
  for (const i of counted) {
    const e = errorsOf(i.counters);
    const d = dropsOf(i.counters);
    errors += e;
    drops += d;
    sample.byKey.set(i.key, { errors: e, drops: d });
    const before = baseline?.byKey.get(i.key);
    if (!before || e < before.errors || d < before.drops) continue;
    // A port that is down drops what is flooded to it (a bridge's own internal port, a VM's tap whose guest end is down): not news.
    const rose = { errors: e - before.errors, drops: i.down ? 0 : d - before.drops };
    if (rose.errors > 0 || rose.drops > 0) {
      const r: CounterRise = { name: i.name, ...rose };
      if (i.bridge !== undefined) r.bridge = i.bridge;
      rising.push(r);
    }
  }
  rising.sort((a, b) => b.errors + b.drops - (a.errors + a.drops) || a.name.localeCompare(b.name));
  const summary: CountersSummary = { at: view.at, interfaces: counted.length, errors, drops, rising: rising.slice(0, 64), bonds: bondsOf(view) };
  if (baseline) summary.sinceS = Math.max(0, Math.round((at - baseline.at) / 1000));
  return { summary, sample };
}

/**
 * What `netfleet status` warns about in a summary (ids `counters-bond`,
 * `counters-lacp`, `counters-rising`): a bond member down, a bond whose
 * LACP is configured but not negotiated, interfaces whose errors or drops
 * rose. Totals alone do not warn: counters only ever grow, and a host that
 * dropped packets once would warn forever.
 */
export function counterWarnings(s: CountersSummary): ResourceWarning[] {
  const out: ResourceWarning[] = [];
  for (const b of s.bonds) {
    const where = b.bridge ? `${b.bridge}/${b.name}` : b.name;
    if (b.membersDown.length > 0) {
      out.push({ id: "counters-bond", message: `bond ${where}: member${b.membersDown.length > 1 ? "s" : ""} ${b.membersDown.join(", ")} down, ${b.membersUp.length} of ${b.membersUp.length + b.membersDown.length} up` });
    }
    if (b.lacp === "configured") out.push({ id: "counters-lacp", message: `bond ${where}: LACP configured but not negotiated with the partner` });
  }
  if (s.rising.length > 0) {
    const errors = s.rising.reduce((n, r) => n + r.errors, 0);
    const drops = s.rising.reduce((n, r) => n + r.drops, 0);
    const names = s.rising.slice(0, 4).map((r) => `${r.name} (+${r.errors} errors, +${r.drops} drops)`);
    out.push({
      id: "counters-rising",
      message: `+${errors} errors, +${drops} drops in ${s.sinceS ?? "?"} s on ${names.join(", ")}${s.rising.length > 4 ? `, +${s.rising.length - 4} more` : ""}`,
    });
  }
  return out;
}
