import { Kvm, type KvWatchEntry } from "@nats-io/kv";
import { appliedBucket, hostsBucket, rolloutBucket, type Inventory } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import { readAudit } from "../store/audit.ts";
import { hostHealth, statusExitCode, type HostHealth, type HostStatus } from "../store/status.ts";
import { auditedNics, matchRecord, type AuditLine, type AuditedNic } from "../store/vm-audit.ts";
import type { RolloutState } from "../rollout/state.ts";
import { vmList, vmPolicy, type VmNicPolicy } from "./policy.ts";

/** A status row with its health, as `netfleet status` judges it (store/status.ts hostHealth). */
export type UiHostRow = HostStatus & { health: HostHealth };

/** What GET /api/status answers: the site, when it was read, each host's row, and the exit code `netfleet status` would give. */
export interface UiStatus {
  site: string;
  at: string;
  hosts: UiHostRow[];
  exitCode: number;
}

/** What GET /api/rollout answers: who holds the rollout lock, and the last rollout's state (hosts included), if any. */
export interface UiRollout {
  lock: { owner: string; acquiredAt: string; renewedAt?: string; rolloutId?: string } | null;
  state: RolloutState | null;
}

/** What GET /api/vm/NAME answers: the VM's policy per NIC (with each key's provenance). */
export interface UiVm {
  name: string;
  nics: VmNicPolicy[];
}

/** What GET /api/vm/NAME/audit answers: the last `limit` audit lines since `since` (oldest first), lost records, batches refused. */
export interface UiAudit {
  vm: string;
  since: string;
  nics: AuditedNic[];
  records: AuditLine[];
  /** How many matching lines were before the ones shown (only the last `limit` are sent). */
  older: number;
  lost: number;
  invalid: string[];
}

/** Everything the dashboard reads; one implementation on a ControlPlane (controlPlaneSource), others in tests. */
export interface UiSource {
  site: string;
  inventory: Inventory;
  status(): Promise<UiStatus>;
  rollout(): Promise<UiRollout>;
  audit(vm: string, since: Date, limit: number): Promise<UiAudit | undefined>;
  /**
   * Calls `changed(bucket)` on every write to the rollout, applied or hosts
   * bucket (rollout progress, an agent's report, enrollment and lastSeen);
   * returns the function that stops listening.
   */
  watch(changed: (what: "rollout" | "applied" | "hosts") => void): Promise<() => void>;
}

/** How long a host may go unheard before the dashboard calls it unreachable: `netfleet status`'s default (90 s). */
export const UI_UNREACHABLE_AFTER_MS = 90_000;

/**
 * The dashboard's reads on a running controller's connection: status rows
 * (ControlPlane.status), the rollout lock and state (RolloutLock), the
 * audit stream (store/audit.ts readAudit with vm-audit.ts matching, as
 * `netfleet audit`), and KV watches (UpdatesOnly) of the rollout, applied
 * and hosts buckets. Reads only: nothing here writes to NATS.
 */
export function controlPlaneSource(cp: ControlPlane, inventory: Inventory): UiSource {
  const site = cp.options.site;
  return {
    site,
    inventory,
    async status() {
      const rows = await cp.status();
      const now = Date.now();
      const hosts = rows.map((r) => ({ ...r, health: hostHealth(r, now, UI_UNREACHABLE_AFTER_MS) }));
      return { site, at: new Date(now).toISOString(), hosts, exitCode: statusExitCode(hosts.map((h) => h.health)) };
    },
    async rollout() {
      const [lock, loaded] = await Promise.all([cp.lock.holder(), cp.loadRolloutState({ withHosts: true })]);
      return { lock: lock ?? null, state: loaded?.state ?? null };
    },
    async audit(vm, since, limit) {
      const nics = await auditedNics(cp.nc, site, inventory, vm);
      if (nics.length === 0) return undefined;
      const result = await readAudit(cp.nc, site, {
        networks: nics.map((n) => n.network),
        since,
        match: (r) => Date.parse(r.time) >= since.getTime() && matchRecord(r, nics) !== undefined,
      });
      const records = result.records.map((r) => ({ ...r, direction: matchRecord(r, nics)! }));
      const shown = records.slice(-limit);
      return { vm, since: since.toISOString(), nics, records: shown, older: records.length - shown.length, lost: result.lost, invalid: result.invalid };
    },
    async watch(changed) {
      const kvm = new Kvm(cp.nc);
      const stops: (() => void)[] = [];
      const buckets = [
        ["rollout", rolloutBucket(site)],
        ["applied", appliedBucket(site)],
        ["hosts", hostsBucket(site)],
      ] as const;
      for (const [what, name] of buckets) {
        const kv = await kvm.open(name);
        const iter = await kv.watch({ key: ">", include: "updates" });
        stops.push(() => iter.stop());
        void (async () => {
          for await (const _e of iter as AsyncIterable<KvWatchEntry>) changed(what);
        })().catch(() => {});
      }
      return () => stops.forEach((s) => s());
    },
  };
}

/** A VM's policy for GET /api/vm/NAME, or undefined when the inventory has no such VM. */
export function uiVm(inventory: Inventory, name: string): UiVm | undefined {
  const nics = vmPolicy(inventory, name);
  return nics.length === 0 ? undefined : { name, nics };
}

export { vmList };
