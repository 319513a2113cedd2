import type { KV, KvEntry } from "@nats-io/kv";
import { DecodeError, EnrollFacts, decodeMessage, encodeMessage } from "@netfleet/shared";
import { z } from "zod";
import { mutateKey, liveValue, snapshot } from "./kv.ts";

/** A host's enrollment state: quarantined (waiting for an operator), approved, rejected. */
export const HostState = z.enum(["quarantined", "approved", "rejected"]);
export type HostState = z.output<typeof HostState>;

/** Facts as kept: the enrollment token is never stored. */
export const StoredFacts = EnrollFacts.omit({ token: true });
export type StoredFacts = z.output<typeof StoredFacts>;

/** One entry of `nf_<site>_hosts`, keyed by inventory host name (or by the claimed name when nothing matched). */
export const HostRecord = z.strictObject({
  host: z.string(),
  inventory: z.boolean(),
  state: HostState,
  /** Why the host is quarantined, or a pending claim on an approved host. */
  reason: z.string().nullable(),
  matchedBy: z.enum(["hostname", "mac"]).nullable(),
  facts: StoredFacts,
  /** The agent key of the latest claim; `approve` hands credentials to it. */
  claimKey: z.string(),
  /** The agent key credentials were sealed to. */
  approvedKey: z.string().nullable(),
  firstSeen: z.string(),
  lastSeen: z.string(),
  approvedAt: z.string().nullable(),
});
export type HostRecord = z.output<typeof HostRecord>;

/** The host registry bucket; every write is a compare-and-set. */
export class HostRegistry {
  private readonly kv: KV;
  constructor(kv: KV) {
    this.kv = kv;
  }

  /**
   * The host's record, if enrolled.
   * @throws DecodeError when the stored value is not a record.
   */
  async get(host: string): Promise<HostRecord | undefined> {
    const entry = liveValue(await this.kv.get(host));
    return entry ? decodeRecord(entry) : undefined;
  }

  /** Every record, by host name; one pass over the bucket. */
  async list(): Promise<HostRecord[]> {
    const entries = await snapshot(this.kv);
    const out: HostRecord[] = [];
    for (const k of [...entries.keys()].sort()) {
      try {
        out.push(decodeRecord(entries.get(k)!));
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
      }
    }
    return out;
  }

  /** Read-modify-write of one record with compare-and-set (see mutateKey); `change` returns undefined to leave it. */
  mutate(host: string, change: (current: HostRecord | undefined) => HostRecord | undefined): Promise<HostRecord | undefined> {
    return mutateKey(this.kv, host, decodeRecord, encodeMessage, change);
  }
}

function decodeRecord(entry: KvEntry): HostRecord {
  return decodeMessage(HostRecord, `kv ${entry.bucket}/${entry.key}`, entry.value);
}
