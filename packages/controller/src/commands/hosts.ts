import type { ControlPlane, HostRecord, HostStatus } from "../control/index.ts";
import { HostNotFoundError } from "../control/index.ts";
import type { CommandOutput } from "../output.ts";

function ago(iso: string | null | undefined): string {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/** `netfleet hosts`: every inventory or enrolled host with its enrollment state. */
export async function hostsCommand(cp: ControlPlane, out: CommandOutput): Promise<number> {
  const records = new Map((await cp.registry.list()).map((r) => [r.host, r]));
  const inventory = new Set(cp.options.hosts.map((h) => h.name));
  const names = [...new Set([...inventory, ...records.keys()])].sort();
  const rows = names.map((host) => {
    const r = records.get(host);
    return {
      host,
      inventory: inventory.has(host),
      state: r?.state ?? "unenrolled",
      reason: r?.reason ?? null,
      matchedBy: r?.matchedBy ?? null,
      claimedName: r?.facts.hostname ?? null,
      agentVersion: r?.facts.agentVersion ?? null,
      ovsVersion: r?.facts.ovsVersion ?? null,
      libvirtVersion: r?.facts.libvirtVersion ?? null,
      kernel: r?.facts.kernel ?? null,
      firstSeen: r?.firstSeen ?? null,
      lastSeen: r?.lastSeen ?? null,
      approvedAt: r?.approvedAt ?? null,
    };
  });
  if (out.json) {
    out.emit({ site: cp.options.site, hosts: rows });
    return 0;
  }
  out.line(`${"HOST".padEnd(16)} ${"STATE".padEnd(12)} ${"MATCHED".padEnd(9)} ${"LAST SEEN".padEnd(10)} NOTE`);
  for (const r of rows) {
    const note = [r.inventory ? "" : "not in inventory", r.reason ?? "", r.claimedName && r.claimedName !== r.host ? `claims ${r.claimedName}` : ""].filter(Boolean).join("; ");
    out.line(`${r.host.padEnd(16)} ${r.state.padEnd(12)} ${(r.matchedBy ?? "-").padEnd(9)} ${ago(r.lastSeen).padEnd(10)} ${note}`);
  }
  return 0;
}

/** `netfleet hosts approve|reject NAME`: asks the running controller service (netfleet serve). */
export async function hostsActionCommand(cp: ControlPlane, action: "approve" | "reject", host: string, out: CommandOutput): Promise<number> {
  let record: HostRecord;
  try {
    record = await cp.admin(action, host);
  } catch (err) {
    out.error(`netfleet hosts ${action}: ${(err as Error).message}`);
    return err instanceof HostNotFoundError ? 2 : 1;
  }
  if (out.json) out.emit({ action, host, state: record.state, record });
  else out.line(`${host}: ${record.state}${record.reason ? ` (${record.reason})` : ""}`);
  return 0;
}

/** One line of text: newlines shown as ` ⏎ `, cut to `max` characters. */
function oneLine(text: string, max: number): string {
  const flat = text.replace(/\n/g, " ⏎ ");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * The lines under a host's status row: its last corrective change (what,
 * when, the first changed field before → after) and its warnings.
 */
export function statusDetails(r: Pick<HostStatus, "corrective" | "warnings">): string[] {
  const lines: string[] = [];
  const last = r.corrective.last;
  if (last) {
    const field = last.changes[0];
    const what = field ? `: ${field.field} ${oneLine(field.before, 60)} → ${oneLine(field.after, 60)}${last.changes.length > 1 ? ` (+${last.changes.length - 1} fields)` : ""}` : "";
    lines.push(`last repaired ${last.id} ${ago(last.at)} (${last.at})${what}`);
  }
  if (r.corrective.error) lines.push(`corrective record unreadable: ${r.corrective.error}`);
  for (const w of r.warnings) lines.push(`warning ${w.id}: ${oneLine(w.message, 160)}`);
  return lines;
}

/** `netfleet status`: per host enrolled, last seen, desired vs applied revision, drift, drift repaired (count, last), warnings. */
export async function statusCommand(cp: ControlPlane, out: CommandOutput): Promise<number> {
  const rows: HostStatus[] = await cp.status();
  const rollout = await cp.loadRolloutState().catch(() => undefined);
  const lock = await cp.lock.holder().catch(() => undefined);
  if (out.json) {
    out.emit({
      site: cp.options.site,
      hosts: rows,
      rollout: rollout ? { id: rollout.state.rolloutId, phase: rollout.state.phase, updatedAt: rollout.state.updatedAt, note: rollout.state.note ?? null } : null,
      lock: lock ?? null,
    });
    return 0;
  }
  out.line(`${"HOST".padEnd(16)} ${"STATE".padEnd(12)} ${"LAST SEEN".padEnd(10)} ${"DESIRED".padEnd(8)} ${"APPLIED".padEnd(8)} ${"DRIFT".padEnd(6)} ${"REPAIRED".padEnd(9)} RESULT`);
  for (const r of rows) {
    const applied = r.applied ? `${r.applied.revision}${r.applied.rolledBack ? "↩" : ""}` : "-";
    const result = r.summary ? `${r.summary.ok} ok, ${r.summary.failed} failed${r.failures.length ? `: ${r.failures.map((f) => f.id).join(", ")}` : ""}` : "";
    out.line(
      `${r.host.padEnd(16)} ${r.state.padEnd(12)} ${ago(r.lastSeen).padEnd(10)} ${String(r.desired?.revision ?? "-").padEnd(8)} ${applied.padEnd(8)} ${(r.drift ? "yes" : "no").padEnd(6)} ${String(r.corrective.count).padEnd(9)} ${result}`,
    );
    for (const line of statusDetails(r)) out.line(`  ${line}`);
  }
  if (rollout) out.line(`last rollout ${rollout.state.rolloutId}: ${rollout.state.phase} (${rollout.state.updatedAt})${rollout.state.note ? `: ${rollout.state.note}` : ""}`);
  if (lock) out.line(`rollout lock held by ${lock.owner} since ${lock.acquiredAt}`);
  return 0;
}
