import type { KV } from "@nats-io/kv";
import { ROLLOUT_LOCK_KEY, ROLLOUT_STATE_KEY, decodeMessage, encodeMessage } from "@netfleet/shared";
import { z } from "zod";
import { compareAndSet, isRevisionConflict, liveValue } from "../store/kv.ts";

/** The rollout lock's value: who holds it (host:pid:rolloutId), since when, last renewed when (ISO times). */
const LockRecord = z.strictObject({
  owner: z.string(),
  acquiredAt: z.string(),
  /** The holder renews the lock while it runs; a lock not renewed for a while belongs to a dead controller. */
  renewedAt: z.string().optional(),
  rolloutId: z.string().optional(),
});
export type LockRecord = z.output<typeof LockRecord>;

/** Proof of holding the lock: the KV revision it was created at. */
export interface RolloutLease extends LockRecord {
  revision: number;
}

/** One host's progress in a rollout, from `pending` to `ok`/`failed`, and on a revert to `reverted`, `revert-failed` or `not-reverted`. */
export const HostProgress = z.strictObject({
  role: z.enum(["backend", "vmhost"]),
  /** Content hash of the assignment this rollout brings. */
  target: z.string(),
  /** What was desired before (to revert to); null when the host had no assignment. */
  previous: z.strictObject({ revision: z.number().int(), hash: z.string() }).nullable(),
  /** KV revision of the desired key when the rollout read it (compare-and-set base of the publish). */
  basedOn: z.number().int(),
  /** Publish a new revision even when the same document is desired: the desired envelope is a saved plan's, which must not be taken for this rollout's. */
  fresh: z.boolean().optional(),
  status: z.enum(["pending", "applying", "ok", "failed", "reverting", "reverted", "revert-failed", "not-reverted"]),
  /** Assignment revision published by this rollout (set from "applying" on). */
  revision: z.number().int().optional(),
  revertRevision: z.number().int().optional(),
  error: z.string().optional(),
});
export type HostProgress = z.output<typeof HostProgress>;

/** Where a rollout stands, for `--resume`. */
export const RolloutState = z.strictObject({
  rolloutId: z.string(),
  owner: z.string(),
  phase: z.enum(["running", "paused", "reverting", "done", "partial", "failed"]),
  startedAt: z.string(),
  updatedAt: z.string(),
  /** Hosts in wave order. */
  waves: z.array(z.array(z.string())),
  completed: z.array(z.string()),
  failed: z.array(z.string()),
  note: z.string().optional(),
  /** Failure budget as an absolute number of hosts. */
  maxFail: z.number().int().min(0).optional(),
  hosts: z.record(z.string(), HostProgress).optional(),
});
export type RolloutState = z.output<typeof RolloutState>;

/**
 * The state as stored: a header (everything but the hosts) under `state`,
 * and the hosts' progress in shards of HOSTS_PER_SHARD under
 * `state.hosts.<i>`, so that no value outgrows the server's max_payload and
 * a save rewrites only the shards whose hosts changed. A header without
 * `shards` holds its hosts inline (the format before shards).
 */
const StoredHeader = RolloutState.extend({ shards: z.number().int().min(0).optional() });
const StoredShard = z.strictObject({ rolloutId: z.string(), hosts: z.record(z.string(), HostProgress) });

/** At most ~2.3 KB per host (an error is cut at 2000 characters): well under 1 MB per shard. */
export const HOSTS_PER_SHARD = 256;

/** The KV key of host shard `index` of the rollout state (`state.hosts.<index>`). */
export function rolloutShardKey(index: number): string {
  return `${ROLLOUT_STATE_KEY}.hosts.${index}`;
}

/** A rollout state as read from KV, with the revisions a compare-and-set write of it must name. */
export interface LoadedRolloutState {
  state: RolloutState;
  /** KV revision of the header. */
  revision: number;
  /** KV revision of each host shard (sharded state only). */
  shardRevisions?: number[];
}

/** A state record (header or shard) larger than the server accepts: the rollout cannot persist its progress. */
export class StateTooLargeError extends Error {
  constructor(key: string, bytes: number, maxPayload: number) {
    super(`rollout state record ${key} is ${bytes} bytes, over the server's max_payload of ${maxPayload} bytes`);
    this.name = "StateTooLargeError";
  }
}

/** Another rollout holds the lock (a live one, for takeOver); `holder` says whose it is. */
export class LockHeldError extends Error {
  readonly holder: LockRecord;
  constructor(holder: LockRecord) {
    super(`rollout lock is held by ${holder.owner} since ${holder.acquiredAt}`);
    this.name = "LockHeldError";
    this.holder = holder;
  }
}

/** The lock (or the state record beside it) was changed by someone else: this rollout may not write any more. */
export class LockLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LockLostError";
  }
}

/** One rollout at a time per site: the lock is a KV key created with compare-and-set. */
export class RolloutLock {
  private readonly kv: KV;
  constructor(kv: KV) {
    this.kv = kv;
  }

  /** Creates the lock for `owner`; throws LockHeldError when it exists. */
  async acquire(owner: string, rolloutId?: string): Promise<RolloutLease> {
    const now = new Date().toISOString();
    const record: LockRecord = { owner, acquiredAt: now, renewedAt: now, ...(rolloutId ? { rolloutId } : {}) };
    try {
      const revision = await this.kv.create(ROLLOUT_LOCK_KEY, encodeMessage(record));
      return { ...record, revision };
    } catch (err) {
      if (!isRevisionConflict(err)) throw err;
      const held = await this.current();
      // Our own create, whose acknowledgement was lost (a timeout on a busy server, retried by the caller):
      // the owner names this process and rollout, so nobody else writes it.
      if (held && held.record.owner === owner) return { ...held.record, revision: held.revision };
      throw new LockHeldError(held?.record ?? { owner: "(unknown)", acquiredAt: "(unknown)" });
    }
  }

  /** Who holds the lock, if anyone. */
  async holder(): Promise<LockRecord | undefined> {
    return (await this.current())?.record;
  }

  /** The lock record with its KV revision (the compare-and-set base of a takeover), if held. */
  async current(): Promise<{ record: LockRecord; revision: number } | undefined> {
    const entry = liveValue(await this.kv.get(ROLLOUT_LOCK_KEY));
    return entry ? { record: decodeMessage(LockRecord, "rollout lock", entry.value), revision: entry.revision } : undefined;
  }

  /**
   * Keeps the lease alive (compare-and-set); a lease someone took over throws LockLostError.
   * A conflict with a record that is still this lease's (same owner and acquiredAt: an earlier
   * renewal whose acknowledgement was lost, on a busy or failing-over server) is not a takeover:
   * the renewal is written again on top of it (a takeover writes another owner and acquiredAt).
   */
  async renew(lease: RolloutLease): Promise<RolloutLease> {
    const record: LockRecord = { owner: lease.owner, acquiredAt: lease.acquiredAt, renewedAt: new Date().toISOString(), ...(lease.rolloutId ? { rolloutId: lease.rolloutId } : {}) };
    let base = lease.revision;
    for (let attempt = 0; ; attempt++) {
      try {
        const revision = await this.kv.update(ROLLOUT_LOCK_KEY, encodeMessage(record), base);
        return { ...record, revision };
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
        const held = await this.current();
        const ours = held && held.record.owner === lease.owner && held.record.acquiredAt === lease.acquiredAt;
        if (!ours || attempt >= 3) throw new LockLostError(`rollout lock of ${lease.owner} was taken over${held ? ` (now held by ${held.record.owner})` : " (deleted)"}`);
        base = held.revision;
      }
    }
  }

  /**
   * Takes over a lock whose holder stopped renewing it `staleMs` ago (a
   * controller that died mid-rollout), with compare-and-set: of two
   * controllers taking over at once, one wins. A live holder is refused.
   */
  async takeOver(owner: string, staleMs: number, rolloutId?: string): Promise<RolloutLease> {
    const held = await this.current();
    if (!held) return this.acquire(owner, rolloutId);
    const last = Date.parse(held.record.renewedAt ?? held.record.acquiredAt);
    if (Date.now() - last < staleMs) throw new LockHeldError(held.record);
    const now = new Date().toISOString();
    const record: LockRecord = { owner, acquiredAt: now, renewedAt: now, ...(rolloutId ? { rolloutId } : {}) };
    try {
      const revision = await this.kv.update(ROLLOUT_LOCK_KEY, encodeMessage(record), held.revision);
      return { ...record, revision };
    } catch (err) {
      if (isRevisionConflict(err)) throw new LockHeldError((await this.holder()) ?? held.record);
      throw err;
    }
  }

  /** Deletes the lock only if it is still the one this lease created. */
  async release(lease: RolloutLease): Promise<void> {
    try {
      await this.kv.delete(ROLLOUT_LOCK_KEY, { previousSeq: lease.revision });
    } catch (err) {
      if (isRevisionConflict(err)) throw new LockLostError(`rollout lock of ${lease.owner} was taken over or already released`);
      throw err;
    }
  }

  /**
   * The last rollout's state; `withHosts: false` reads the header only (its
   * `hosts` then absent). Shards of another rollout (a controller that died
   * between writing shards and header) make the state unreadable.
   */
  async loadState(options: { withHosts?: boolean } = {}): Promise<LoadedRolloutState | undefined> {
    const entry = liveValue(await this.kv.get(ROLLOUT_STATE_KEY));
    if (!entry) return undefined;
    const { shards, ...state } = decodeMessage(StoredHeader, "rollout state", entry.value);
    if (shards === undefined) return { state, revision: entry.revision };
    if (options.withHosts === false) return { state, revision: entry.revision, shardRevisions: [] };
    const hosts: Record<string, HostProgress> = {};
    const shardRevisions: number[] = [];
    const read = await Promise.all(Array.from({ length: shards }, (_, i) => this.kv.get(rolloutShardKey(i))));
    for (const [i, raw] of read.entries()) {
      const e = liveValue(raw);
      if (!e) throw new Error(`rollout state of ${state.rolloutId} is incomplete: host shard ${i} of ${shards} is missing`);
      const shard = decodeMessage(StoredShard, `rollout state shard ${i}`, e.value);
      if (shard.rolloutId !== state.rolloutId) throw new Error(`rollout state of ${state.rolloutId} is incomplete: host shard ${i} belongs to rollout ${shard.rolloutId}`);
      Object.assign(hosts, shard.hosts);
      shardRevisions.push(e.revision);
    }
    return { state: { ...state, hosts }, revision: entry.revision, shardRevisions };
  }

  /**
   * Compare-and-set on the state record: `lastRevision` is what `loadState`
   * (or the previous save) returned; 0 for a new record. Writes every shard;
   * a rollout keeps a RolloutStateWriter, which writes only what changed.
   */
  async saveState(state: RolloutState, lastRevision: number): Promise<number> {
    const writer = new RolloutStateWriter(this.kv, lastRevision);
    await writer.save(state);
    return writer.revision;
  }

  /** A writer continuing from a loaded (or absent: revision 0) state record. */
  writer(loaded: { revision: number; shardRevisions?: number[] } | undefined, maxPayload?: number): RolloutStateWriter {
    return new RolloutStateWriter(this.kv, loaded?.revision ?? 0, loaded?.shardRevisions, maxPayload);
  }
}

/**
 * Writes a rollout's state: hosts into shards (in wave order), then the
 * header, each with compare-and-set against what this writer last wrote
 * (a conflict means someone else took the rollout over: LockLostError).
 * Unchanged shards and an unchanged header are not written again.
 */
export class RolloutStateWriter {
  private readonly kv: KV;
  private readonly maxPayload: number;
  private headerRevision: number;
  /** Per shard: KV revision last written or read; undefined: not known yet (read before the first write). */
  private readonly shardRevisions: (number | undefined)[];
  private layout: { rolloutId: string; shardOf: Map<string, number>; shards: string[][] } | undefined;
  private lastHeader: string | undefined;
  private lastWaves: RolloutState["waves"] | undefined;
  /** Per key: the values of writes whose outcome is unknown since its last acknowledged write (see put). */
  private readonly unacknowledged = new Map<string, Uint8Array[]>();

  constructor(kv: KV, headerRevision: number, shardRevisions?: number[], maxPayload = Infinity) {
    this.kv = kv;
    this.headerRevision = headerRevision;
    this.shardRevisions = [...(shardRevisions ?? [])];
    this.maxPayload = maxPayload;
  }

  /** KV revision of the header as last written or read. */
  get revision(): number {
    return this.headerRevision;
  }

  private plan(state: RolloutState): NonNullable<RolloutStateWriter["layout"]> {
    // A rollout's hosts are fixed once planned: the layout is made once per rollout.
    if (this.layout?.rolloutId === state.rolloutId) return this.layout;
    const names = Object.keys(state.hosts ?? {});
    const inWaves = new Set(state.waves.flat().filter((h) => state.hosts![h]));
    const ordered = [...inWaves, ...names.filter((h) => !inWaves.has(h)).sort()];
    const shardOf = new Map<string, number>();
    const shards: string[][] = [];
    for (const [i, host] of ordered.entries()) {
      const n = Math.floor(i / HOSTS_PER_SHARD);
      (shards[n] ??= []).push(host);
      shardOf.set(host, n);
    }
    // A new rollout (or layout) rewrites every shard.
    if (this.layout?.rolloutId !== state.rolloutId) this.lastHeader = undefined;
    this.layout = { rolloutId: state.rolloutId, shardOf, shards };
    return this.layout;
  }

  private encode(key: string, value: unknown): Uint8Array {
    const bytes = encodeMessage(value);
    if (bytes.length > this.maxPayload) throw new StateTooLargeError(key, bytes.length, this.maxPayload);
    return bytes;
  }

  /**
   * Writes `bytes` to `key` with compare-and-set on `lastRevision`. A write whose acknowledgement
   * was lost (a timeout on a busy server; the caller retries the save) may have landed all the
   * same: the next attempt then conflicts with our own value. The values of writes whose outcome
   * is unknown (they failed other than by a conflict) are kept per key until one is acknowledged,
   * so such a conflict is told from someone else's write (LockLostError): when the key holds one
   * of them, the write goes on on top of it.
   */
  private async put(key: string, bytes: Uint8Array, lastRevision: number | undefined): Promise<number> {
    const uncertain = this.unacknowledged.get(key) ?? [];
    // Unknown revision: the key may hold an older rollout's shard.
    let base = lastRevision ?? liveValue(await this.kv.get(key))?.revision ?? 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const revision = await compareAndSet(this.kv, key, bytes, base);
        this.unacknowledged.delete(key);
        return revision;
      } catch (err) {
        if (!isRevisionConflict(err)) {
          // Bounded: the last few writes of unknown outcome per key.
          this.unacknowledged.set(key, [...uncertain, bytes].slice(-8));
          throw err;
        }
        const now = uncertain.length ? liveValue(await this.kv.get(key)) : undefined;
        const ours = now !== undefined && uncertain.some((b) => sameBytes(b, now.value));
        if (!ours || attempt >= 3) throw new LockLostError("rollout state was changed by someone else");
        base = now.revision;
      }
    }
  }

  /** The header alone, without hosts: a state whose hosts cannot be written any more (it is then not resumable). */
  async saveHeaderOnly(state: RolloutState): Promise<void> {
    const { hosts: _none, ...header } = state;
    this.headerRevision = await this.put(ROLLOUT_STATE_KEY, this.encode(ROLLOUT_STATE_KEY, header), this.headerRevision);
    this.lastHeader = undefined;
  }

  /**
   * Writes the shards holding `dirty` hosts (all of them when omitted, or
   * on the first save of a rollout), then the header when it changed (or
   * when `dirty` is omitted). `updatedAt` alone does not make the header change.
   */
  async save(state: RolloutState, dirty?: ReadonlySet<string>): Promise<void> {
    if (!state.hosts) {
      const { hosts: _none, ...header } = state;
      this.headerRevision = await this.put(ROLLOUT_STATE_KEY, this.encode(ROLLOUT_STATE_KEY, header), this.headerRevision);
      return;
    }
    const fresh = this.layout?.rolloutId !== state.rolloutId;
    const layout = this.plan(state);
    const todo = new Set<number>();
    if (!dirty || fresh) layout.shards.forEach((_, i) => todo.add(i));
    else for (const host of dirty) {
      const n = layout.shardOf.get(host);
      if (n !== undefined) todo.add(n);
    }
    const writes = [...todo].map((n) => {
      const hosts: Record<string, HostProgress> = {};
      for (const h of layout.shards[n]!) hosts[h] = state.hosts![h]!;
      const key = rolloutShardKey(n);
      return { n, key, bytes: this.encode(key, { rolloutId: state.rolloutId, hosts }) };
    });
    await Promise.all(writes.map(async (w) => (this.shardRevisions[w.n] = await this.put(w.key, w.bytes, this.shardRevisions[w.n]))));
    // The waves (every host's name) are fixed once a rollout is planned: compared by identity, not re-serialised on every save.
    const { hosts: _hosts, updatedAt: _at, waves, ...rest } = state;
    const header = JSON.stringify({ ...rest, shards: layout.shards.length });
    if (dirty && header === this.lastHeader && waves === this.lastWaves) return;
    const { hosts: _h, ...stored } = state;
    this.headerRevision = await this.put(ROLLOUT_STATE_KEY, this.encode(ROLLOUT_STATE_KEY, { ...stored, shards: layout.shards.length }), this.headerRevision);
    this.lastHeader = header;
    this.lastWaves = waves;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
