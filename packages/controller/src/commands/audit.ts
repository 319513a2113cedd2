import type { Inventory } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import { readAudit } from "../store/audit.ts";
import { auditedNics, matchRecord, type AuditLine } from "../store/vm-audit.ts";
import type { CommandOutput } from "../output.ts";

/** Default window of `netfleet audit`: the last 24 hours. */
export const AUDIT_DEFAULT_SINCE_MS = 24 * 3600 * 1000;

/**
 * Parses `--since`: a duration back from `now` (`90s`, `15m`, `1h`, `7d`)
 * or an ISO 8601 date-time (`2026-11-29T21:00:00Z`).
 * @throws Error naming the accepted forms when it is neither.
 */
export function parseSince(text: string, now = Date.now()): Date {
  const m = /^(\d{1,9})(s|m|h|d)$/.exec(text.trim());
  if (m) return new Date(now - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"]);
  if (/^\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?$/.test(text.trim())) {
    const t = Date.parse(text.trim());
    if (!Number.isNaN(t)) return new Date(t);
  }
  throw new Error(`--since takes a duration (90s, 15m, 1h, 7d) or an ISO date-time, not ${JSON.stringify(text)}`);
}

function endpoint(address: string, port: number | undefined): string {
  if (port === undefined) return address;
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** One line of the human output: time, reached/refused, direction, protocol, from -> to, network and backend. */
export function formatAuditLine(r: AuditLine): string {
  const what = r.verdict === "allow" ? "reached" : "refused";
  const icmp = r.icmp ? ` type ${r.icmp.type}/${r.icmp.code}` : "";
  return `${r.time}  ${what.padEnd(7)}  ${r.direction.padEnd(3)}  ${r.proto.padEnd(6)}  ${endpoint(r.src, r.sport)} -> ${endpoint(r.dst, r.dport)}${icmp}  (${r.network} at ${r.host})`;
}

/**
 * `netfleet audit <vm> [--since 1h|ISO] [--json]`: what the VM reached
 * through the gateway and what the gateway refused, from the site's audit
 * stream, oldest first (newest last), one line each. --json emits
 * `{site, vm, nics, since, records: AuditLine[], lost, invalid}`.
 * Exit 0 (also with no records), 2 when the inventory has no such VM.
 */
export async function auditCommand(cp: ControlPlane, inventory: Inventory, vm: string, since: Date, out: CommandOutput): Promise<number> {
  const nics = await auditedNics(cp.nc, cp.options.site, inventory, vm);
  if (nics.length === 0) {
    out.error(`netfleet audit: no VM named ${JSON.stringify(vm)} in the inventory ${inventory.dir}`);
    return 2;
  }
  const result = await readAudit(cp.nc, cp.options.site, {
    networks: nics.map((n) => n.network),
    since,
    // The stream is read from the batches stored since then; a batch held back while NATS was away can carry older records.
    match: (r) => Date.parse(r.time) >= since.getTime() && matchRecord(r, nics) !== undefined,
  });
  const records: AuditLine[] = result.records.map((r) => ({ ...r, direction: matchRecord(r, nics)! }));
  if (out.json) {
    out.emit({ site: cp.options.site, vm, nics, since: since.toISOString(), records, lost: result.lost, invalid: result.invalid });
    return 0;
  }
  out.line(`${vm}: ${nics.map((n) => `${n.network} ${n.mac} ${n.addresses.join(" ") || "(no address now: matched by MAC)"}`).join("; ")}; since ${since.toISOString()}`);
  for (const r of records) out.line(formatAuditLine(r));
  const reached = records.filter((r) => r.verdict === "allow").length;
  out.line(`${reached} reached, ${records.length - reached} refused`);
  if (result.lost > 0) out.line(`warning: the gateway's collectors lost ${result.lost} records of these networks in this window (queue full or capture restarted); the audit has gaps`);
  for (const e of result.invalid) out.error(`netfleet audit: warning: audit batch not used: ${e}`);
  return 0;
}
