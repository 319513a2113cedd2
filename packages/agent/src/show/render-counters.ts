import type { CountersSummary, HostView, LinkCounters } from "@netfleet/shared";
import { human, table } from "./format.ts";

/**
 * The counter sections of `show`'s text (render.ts places them): OVS
 * bonds as `ovs-appctl bond/show` states them (lacp_status, each member
 * enabled or disabled, its LACP words), each OVS Interface's statistics,
 * and the summary `netfleet status` reads. Pure; the view is already
 * escaped by render.ts.
 */

/** OVS bonds: `bridge/port: lacp_status X, active member Y`, then one line per member. */
export function ovsBonds(view: HostView): string[] {
  const out: string[] = [];
  for (const b of view.bridges ?? []) {
    for (const p of b.ports) {
      if (!p.bond) continue;
      const up = p.bond.members.filter((m) => m.enabled).length;
      out.push(`  ${b.name}/${p.name}: ${p.bondMode ?? "bond"}, lacp_status ${p.bond.lacpStatus ?? "-"}, ${up} of ${p.bond.members.length} members enabled${p.bond.activeMember ? `, active ${p.bond.activeMember}` : ""}`);
      for (const m of p.bond.members) {
        const lacp = m.lacpStatus ? `, lacp ${m.lacpStatus.join(" ")}` : "";
        const partner = m.partnerState ? `, partner ${m.partnerState.join(" ") || "(none)"}` : "";
        out.push(`    member ${m.name}: ${m.enabled ? "enabled" : "disabled"}${m.mayEnable ? "" : " (may_enable false)"}${lacp}${partner}`);
      }
    }
  }
  return out.length > 0 ? ["OVS bonds", ...out] : [];
}

/** Every OVS Interface with statistics: one row each, as `ip -s link` would count it (seen from the switch). */
export function ovsCounters(view: HostView): string[] {
  const rows: string[][] = [];
  for (const b of view.bridges ?? []) {
    for (const p of b.ports) {
      for (const i of p.interfaces) {
        if (!i.counters) continue;
        const c: LinkCounters = i.counters;
        rows.push([b.name, i.name, i.linkState ?? "-", human(c.rxPackets), human(c.rxBytes), human(c.rxDropped), human(c.rxErrors), human(c.txPackets), human(c.txBytes), human(c.txDropped), human(c.txErrors)]);
      }
    }
  }
  if (rows.length === 0) return [];
  return ["OVS interface counters (statistics; rx: what the port's device sent into the switch)", ...table([["BRIDGE", "INTERFACE", "LINK", "RX PKTS", "RX BYTES", "RX DROP", "RX ERR", "TX PKTS", "TX BYTES", "TX DROP", "TX ERR"], ...rows])];
}

/** The summary in one or two lines: totals, what rose and since when, bonds with members down. */
export function countersSummary(s: CountersSummary | undefined): string[] {
  if (!s) return [];
  const since = s.sinceS === undefined ? "no earlier read to compare with" : s.rising.length === 0 ? `nothing rose in ${s.sinceS} s` : `rose in ${s.sinceS} s: ${s.rising.map((r) => `${r.bridge ? `${r.bridge}/` : ""}${r.name} +${r.errors} errors +${r.drops} drops`).join(", ")}`;
  const out = [`Counters: ${s.interfaces} interfaces, ${human(s.errors)} errors, ${human(s.drops)} drops in total; ${since}`];
  const down = s.bonds.filter((b) => b.membersDown.length > 0 || b.lacp === "configured");
  for (const b of down) out.push(`  bond ${b.bridge ? `${b.bridge}/` : ""}${b.name}: ${b.membersDown.length > 0 ? `${b.membersDown.join(", ")} down` : "all members up"}${b.lacp === "configured" ? ", LACP not negotiated" : ""}`);
  return out;
}
