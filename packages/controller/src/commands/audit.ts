import { Kvm } from "@nats-io/kv";
import { LeaseTable, decodeMessage, leasesBucket, liveLeases, type AuditRecord, type Inventory } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import { readAudit, type StoredAuditRecord } from "../store/audit.ts";
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

/** One NIC of the VM asked about: its network, MAC, and the addresses it holds (static, extra, and its live DHCP lease). */
export interface AuditedNic {
  network: string;
  mac: string;
  addresses: string[];
}

/** A matching record, with its direction seen from the VM: `out` (it sent it), `in` (sent to it). */
export type AuditLine = StoredAuditRecord & { direction: "out" | "in" };

/**
 * Which of the VM's NICs a record concerns, and how. A record the VM sent
 * carries the VM's MAC as its frame source (NFULA_HWADDR); when a record
 * has a MAC, that decides (a shared virtual IP cannot make another VM's
 * packet look like ours). Without a MAC the source address decides. A
 * record whose destination is one of the VM's addresses is `in`.
 */
export function matchRecord(record: AuditRecord, nics: readonly AuditedNic[]): "out" | "in" | undefined {
  for (const nic of nics) {
    if (record.network !== nic.network) continue;
    const fromVm = record.mac !== undefined ? record.mac.toLowerCase() === nic.mac : nic.addresses.includes(record.src);
    if (fromVm) return "out";
    if (nic.addresses.includes(record.dst)) return "in";
  }
  return undefined;
}

/** The VM's NICs in the inventory (a VM name may appear in several networks), with live leases read from `nf_<site>_leases`. */
export async function auditedNics(cp: ControlPlane, inventory: Inventory, vm: string): Promise<AuditedNic[]> {
  const nics = inventory.networks.flatMap((n) =>
    n.vms.filter((v) => v.name === vm).map((v) => ({ network: n.name, mac: v.mac.toLowerCase(), addresses: [...(v.ip ? [v.ip] : []), ...v.extra_addresses] })),
  );
  if (nics.length === 0) return nics;
  const kv = await new Kvm(cp.nc).open(leasesBucket(cp.options.site));
  const now = Math.floor(Date.now() / 1000);
  for await (const key of await kv.keys()) {
    const entry = await kv.get(key);
    if (!entry || entry.operation !== "PUT") continue;
    let table: LeaseTable;
    try {
      table = decodeMessage(LeaseTable, `kv ${entry.bucket}/${key}`, entry.value);
    } catch {
      continue; // a backend's bad table names no address of ours
    }
    for (const nic of nics) {
      for (const lease of liveLeases(table.networks[nic.network] ?? [], now)) {
        if (lease.mac === nic.mac && !nic.addresses.includes(lease.ip)) nic.addresses.push(lease.ip);
      }
    }
  }
  return nics;
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
  const nics = await auditedNics(cp, inventory, vm);
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
  for (const e of result.invalid) out.error(`warning: audit batch not used: ${e}`);
  return 0;
}
