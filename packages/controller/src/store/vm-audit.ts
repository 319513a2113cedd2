import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { LeaseTable, decodeMessage, leasesBucket, liveLeases, type AuditRecord, type Inventory } from "@netfleet/shared";
import type { StoredAuditRecord } from "./audit.ts";

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
export async function auditedNics(nc: NatsConnection, site: string, inventory: Inventory, vm: string): Promise<AuditedNic[]> {
  const nics = inventory.networks.flatMap((n) =>
    n.vms.filter((v) => v.name === vm).map((v) => ({ network: n.name, mac: v.mac.toLowerCase(), addresses: [...(v.ip ? [v.ip] : []), ...v.extra_addresses] })),
  );
  if (nics.length === 0) return nics;
  const kv = await new Kvm(nc).open(leasesBucket(site));
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
