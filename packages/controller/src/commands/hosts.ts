import type { ControlPlane } from "../control-plane.ts";
import { requestAdmin, type AdminOptions } from "../enrollment/admin.ts";
import { HostNotFoundError } from "../enrollment/service.ts";
import type { HostRecord } from "../store/registry.ts";
import { hostHealth, readEnrollments, statusExitCode, type HostHealth, type HostStatus } from "../store/status.ts";
import { DNS_LABEL, escapeText, loadInventory, type Inventory } from "@netfleet/shared";
import { HOST_TOKEN_MAX_TTL_MS, mintHostToken } from "../enrollment/host-tokens.ts";
import { open } from "node:fs/promises";
import { ControllerHome } from "../store/home.ts";
import type { CommandOutput } from "../output.ts";

function ago(iso: string | null | undefined): string {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/** `netfleet hosts`: every inventory or enrolled host with its enrollment state. */
export async function hostsCommand(cp: ControlPlane, out: CommandOutput): Promise<number> {
  const rows = await readEnrollments(cp.registry, cp.options.hosts);
  if (out.json) {
    out.emit({ site: cp.options.site, hosts: rows });
    return 0;
  }
  out.line(`${"HOST".padEnd(16)} ${"STATE".padEnd(12)} ${"MATCHED".padEnd(9)} ${"LAST SEEN".padEnd(10)} NOTE`);
  for (const r of rows) {
    out.line(hostsRow(r));
  }
  return 0;
}

/**
 * One row of `netfleet hosts`. The reason, the claimed hostname and the
 * other fields come from an agent's enrollment or the registry: every one is
 * escaped (escapeText), so a CR, an escape sequence or a bidi control sent by
 * an agent shows as `\r`, `\x1b`, `\u{202e}` and cannot forge a row or drive
 * the terminal.
 */
export function hostsRow(r: { host: string; inventory: boolean; state: string; reason: string | null; matchedBy: string | null; claimedName: string | null; lastSeen: string | null }): string {
  const note = [r.inventory ? "" : "not in inventory", r.reason ? oneLine(r.reason, 160) : "", r.claimedName && r.claimedName !== r.host ? `claims ${oneLine(r.claimedName, 64)}` : ""].filter(Boolean).join("; ");
  return `${oneLine(r.host, 64).padEnd(16)} ${oneLine(r.state, 32).padEnd(12)} ${oneLine(r.matchedBy ?? "-", 32).padEnd(9)} ${ago(r.lastSeen).padEnd(10)} ${note}`;
}

/** `netfleet hosts approve|reject|revoke|rekey NAME`: asks the running controller service (netfleet serve). */
export async function hostsActionCommand(cp: ControlPlane, action: "approve" | "reject" | "revoke" | "rekey", host: string, out: CommandOutput, options: AdminOptions = {}): Promise<number> {
  let record: HostRecord;
  try {
    record = options.replaceKey ? await requestAdmin(cp.nc, cp.options.site, action, host, 15_000, options) : await cp.admin(action, host);
  } catch (err) {
    out.error(`netfleet hosts ${action}: ${(err as Error).message}`);
    return err instanceof HostNotFoundError ? 2 : 1;
  }
  if (out.json) out.emit({ action, host, state: record.state, record });
  else out.line(`${oneLine(host, 64)}: ${oneLine(record.state, 32)}${record.reason ? ` (${oneLine(record.reason, 160)})` : ""}`);
  return 0;
}

/**
 * A host token's lifetime from `--ttl`: a duration (90s, 15m, 24h, 7d), ms.
 * @throws Error naming the option when it is not one, or not in (0, 30 days].
 */
export function parseTtl(text: string): number {
  const m = /^(\d{1,7})(s|m|h|d)$/.exec(text.trim());
  const ms = m ? Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"] : NaN;
  if (!(ms > 0 && ms <= HOST_TOKEN_MAX_TTL_MS)) throw new Error(`--ttl takes a duration from 1s to 30d (90s, 15m, 24h, 7d), not ${JSON.stringify(text)}`);
  return ms;
}

/**
 * `netfleet hosts token NAME [--ttl 24h] [--out FILE]`: mints a host token
 * for one inventory host and prints it (stdout; with --json `{host, token,
 * expiresAt}`), or writes it to FILE, created 0600 with O_EXCL (an existing
 * file or a link at the path is refused, exit 1, nothing written). Works from the controller's state dir alone (its secrets and
 * the host-token key in credentials/), no running serve: the controller
 * checks the token when the agent enrolls. Refuses (exit 2) a host the
 * inventory (the site folder given, else the one serve recorded) does not list.
 */
export async function hostsTokenCommand(
  o: { stateDir: string; host: string; ttlMs: number; inventory?: Inventory; outFile?: string },
  out: CommandOutput,
): Promise<number> {
  const home = new ControllerHome(o.stateDir);
  let secrets;
  try {
    secrets = await home.secrets(o.inventory?.site.name ?? (await home.config())?.site, { create: false });
  } catch (err) {
    out.error(`netfleet hosts token: ${(err as Error).message}`);
    return 1;
  }
  let inventory = o.inventory;
  if (!inventory) {
    const recorded = (await home.config())?.inventory;
    if (recorded) inventory = (() => { try { return loadInventory(recorded); } catch { return undefined; } })();
  }
  if (!DNS_LABEL.test(o.host)) {
    out.error(`netfleet hosts token: ${JSON.stringify(o.host)} is not a host name (a DNS label)`);
    return 2;
  }
  if (inventory && !inventory.hosts.some((h) => h.name === o.host)) {
    out.error(`netfleet hosts token: ${oneLine(o.host, 64)} is not in the inventory of site ${inventory.site.name}`);
    return 2;
  }
  if (!inventory) out.error(`netfleet hosts token: warning: no inventory to check ${oneLine(o.host, 64)} against (give the site folder); the controller refuses it at enrollment if it is not listed`);
  const minted = await mintHostToken(home.credentialsDir, { site: secrets.site, enrollPassword: secrets.enrollment.enrollPassword, host: o.host, ttlMs: o.ttlMs });
  if (o.outFile !== undefined) {
    // O_CREAT|O_EXCL ("wx"), mode 0600: never over an existing file, never through a link planted at the path.
    try {
      const fh = await open(o.outFile, "wx", 0o600);
      try {
        await fh.writeFile(`${minted.token}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      out.error(`netfleet hosts token: --out ${o.outFile}: ${code === "EEXIST" ? "exists (or is a link); not overwritten, nothing written" : (err as Error).message}`);
      return 1;
    }
    if (out.json) out.emit({ host: o.host, file: o.outFile, expiresAt: minted.expiresAt.toISOString() });
    else out.line(`${o.host}: host token written to ${o.outFile} (0600), valid until ${minted.expiresAt.toISOString()}`);
    return 0;
  }
  if (out.json) out.emit({ host: o.host, token: minted.token, expiresAt: minted.expiresAt.toISOString() });
  else out.line(minted.token);
  return 0;
}

/**
 * Text an agent reported, for one line of the terminal: newlines shown as
 * ` ⏎ `, tabs kept (nft and dnsmasq diffs are indented with them; a tab
 * moves the cursor right only), every other character that could end the line, start a terminal
 * escape sequence (ESC, CSI, OSC, BEL) or reorder the display (bidi
 * controls) written as a visible escape (escapeText), cut to `max`
 * characters (the cut never splits an escape's meaning: the text is already
 * escaped). Plain text is printed unchanged.
 */
export function oneLine(text: string, max: number): string {
  const flat = String(text).replace(/\n/g, " ⏎ ").split("\t").map(escapeText).join("\t");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * The lines under a host's status row: its last corrective change (what,
 * when, the first changed field before → after) and its warnings.
 */
export function statusDetails(r: Pick<HostStatus, "corrective" | "warnings"> & { agent?: HostStatus["agent"] }): string[] {
  const lines: string[] = [];
  if (r.agent?.reason) lines.push(`agent upgrade ${oneLine(r.agent.state, 32)}: ${oneLine(r.agent.reason, 160)}`);
  const last = r.corrective.last;
  if (last) {
    const field = last.changes[0];
    const field0 = field ? `: ${oneLine(field.field, 60)} ${oneLine(field.before, 60)} → ${oneLine(field.after, 60)}${last.changes.length > 1 ? ` (+${last.changes.length - 1} fields)` : ""}` : "";
    lines.push(`last repaired ${oneLine(last.id, 80)} ${ago(last.at)} (${oneLine(last.at, 40)})${field0}`);
  }
  if (r.corrective.error) lines.push(`corrective record unreadable: ${oneLine(r.corrective.error, 160)}`);
  for (const w of r.warnings) lines.push(`warning ${oneLine(w.id, 80)}: ${oneLine(w.message, 160)}`);
  return lines;
}

/** The AGENT column of `netfleet status`: the version the host's agent reports, with its upgrade state unless running ("-": never reported). */
export function agentColumn(agent: HostStatus["agent"] | undefined): string {
  if (!agent) return "-";
  return `${oneLine(agent.version, 64)}${agent.state !== "running" ? ` (${oneLine(agent.state, 32)})` : ""}`;
}

/** How long without a heartbeat or report `netfleet status` calls a host unreachable by default (see hostHealth). */
export const UNREACHABLE_AFTER_MS = 90_000;

/**
 * Above this many approved hosts (among those a status selects), `netfleet status` does not ask the agents
 * for their counters unless told to (--counters): they are asked 8 at a time, one request each, so 10,000
 * hosts always ran into the 30 s budget (issue 18) and the answer came late and incomplete. The stores'
 * view (enrollment, revisions, drift, health) does not need them; `--limit` selects the hosts to look at
 * closely, and gets their counters.
 */
export const COUNTERS_AUTO_MAX_HOSTS = 64;

/** Whether a status asked the agents for counters, and why not when it did not (the `counters` of status --json). */
export interface CountersAsked {
  asked: boolean;
  /** Approved hosts among the selected ones: those that would be (or were) asked. */
  hosts: number;
  /** Why they were not asked: "--no-counters", or more than COUNTERS_AUTO_MAX_HOSTS without --counters. */
  reason?: string;
}

/**
 * `netfleet status`: per host enrolled, last seen, desired vs applied revision, drift, drift repaired (count, last),
 * warnings, and its health (store/status.ts hostHealth); `limit`: --limit terms. Returns the exit code
 * (STATUS_EXIT: 0 converged, 1 drift or failure, 2 unreachable), for monitoring. `counters`: true asks each
 * approved host's agent for its counters summary (ControlPlane.status), false asks none; by default (undefined)
 * they are asked when the selection has at most COUNTERS_AUTO_MAX_HOSTS approved hosts, and the output says
 * when they were not (a line in text, `counters` in --json); `countersAutoMaxHosts` replaces that bound (tests).
 * @throws LimitError when `limit` selects no host; errors reading the stores.
 */
export async function statusCommand(cp: ControlPlane, out: CommandOutput, options: { limit?: readonly string[]; unreachableAfterMs?: number; counters?: boolean; countersAutoMaxHosts?: number } = {}): Promise<number> {
  const most = options.countersAutoMaxHosts ?? COUNTERS_AUTO_MAX_HOSTS;
  const limit = options.limit ? { limit: options.limit } : {};
  // A site whose inventory is small enough is asked at once; else the stores are read first, and read again
  // with counters only when the selection turns out small (a --limit): a fleet's status is read once.
  const askAtOnce = options.counters ?? (cp.options.hosts.length <= most && !options.limit);
  // The last rollout and the lock are read side by side with the hosts.
  const rolloutRead = cp.loadRolloutState().catch(() => undefined);
  const lockRead = cp.lock.holder().catch(() => undefined);
  let rows: HostStatus[] = await cp.status({ ...limit, counters: askAtOnce });
  const approved = rows.filter((r) => r.state === "approved").length;
  let counters: CountersAsked = { asked: askAtOnce, hosts: approved };
  if (!askAtOnce) {
    if (options.counters === false) counters = { asked: false, hosts: approved, reason: "--no-counters" };
    else if (approved > most) counters = { asked: false, hosts: approved, reason: `more than ${most} approved hosts: --counters asks them all, --limit selects fewer` };
    else if (approved > 0) {
      rows = await cp.status({ ...limit, counters: true });
      counters = { asked: true, hosts: rows.filter((r) => r.state === "approved").length };
    }
  }
  const [rollout, lock] = await Promise.all([rolloutRead, lockRead]);
  const now = Date.now();
  const health = rows.map((r) => hostHealth(r, now, options.unreachableAfterMs ?? UNREACHABLE_AFTER_MS));
  const code = statusExitCode(health);
  const counts: Partial<Record<HostHealth, number>> = {};
  for (const h of health) counts[h] = (counts[h] ?? 0) + 1;
  if (out.json) {
    out.emit({
      site: cp.options.site,
      hosts: rows.map((r, i) => ({ ...r, health: health[i] })),
      health: counts,
      exitCode: code,
      rollout: rollout ? { id: rollout.state.rolloutId, phase: rollout.state.phase, updatedAt: rollout.state.updatedAt, note: rollout.state.note ?? null } : null,
      lock: lock ?? null,
      counters,
    });
    return code;
  }
  out.line(`${"HOST".padEnd(16)} ${"STATE".padEnd(12)} ${"LAST SEEN".padEnd(10)} ${"DESIRED".padEnd(8)} ${"APPLIED".padEnd(8)} ${"DRIFT".padEnd(6)} ${"REPAIRED".padEnd(9)} ${"AGENT".padEnd(12)} RESULT`);
  for (const r of rows) {
    const applied = r.applied ? `${r.applied.revision}${r.applied.rolledBack ? "↩" : ""}` : "-";
    const result = r.summary ? `${r.summary.ok} ok, ${r.summary.failed} failed${r.failures.length ? `: ${r.failures.map((f) => oneLine(f.id, 80)).join(", ")}` : ""}` : "";
    out.line(
      `${oneLine(r.host, 64).padEnd(16)} ${oneLine(r.state, 32).padEnd(12)} ${ago(r.lastSeen).padEnd(10)} ${oneLine(String(r.desired?.revision ?? "-"), 16).padEnd(8)} ${oneLine(applied, 16).padEnd(8)} ${(r.drift ? "yes" : "no").padEnd(6)} ${String(r.corrective.count).padEnd(9)} ${agentColumn(r.agent).padEnd(12)} ${result}`,
    );
    for (const line of statusDetails(r)) out.line(`  ${line}`);
  }
  if (rollout) out.line(`last rollout ${oneLine(rollout.state.rolloutId, 64)}: ${oneLine(rollout.state.phase, 32)} (${oneLine(rollout.state.updatedAt, 40)})${rollout.state.note ? `: ${oneLine(rollout.state.note, 160)}` : ""}`);
  if (lock) out.line(`rollout lock held by ${oneLine(lock.owner, 80)} since ${oneLine(lock.acquiredAt, 40)}`);
  if (!counters.asked && counters.reason !== "--no-counters" && counters.hosts > 0) out.line(`counters: not asked of ${counters.hosts} approved hosts (${counters.reason})`);
  out.line(healthLine(rows, health, code));
  return code;
}

/** The last line of `netfleet status`: how many hosts are in each health, the hosts that are not converged, and the exit code. */
function healthLine(rows: readonly HostStatus[], health: readonly HostHealth[], code: number): string {
  const order: HostHealth[] = ["unreachable", "failed", "drift", "not-approved"];
  const counted = rows.filter((_, i) => health[i] !== "ignored").length;
  const converged = health.filter((h) => h === "converged").length;
  const parts = [`${converged}/${counted} converged`];
  for (const kind of order) {
    const hosts = rows.filter((_, i) => health[i] === kind).map((r) => oneLine(r.host, 64));
    if (hosts.length) parts.push(`${kind}: ${hosts.slice(0, 10).join(", ")}${hosts.length > 10 ? ` (+${hosts.length - 10})` : ""}`);
  }
  return `health: ${parts.join("; ")} (exit ${code})`;
}
