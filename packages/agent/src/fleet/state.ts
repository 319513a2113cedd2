import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, statSync, unlinkSync, writeSync } from "node:fs";
import { chmod, readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import {
  AgentCredentials,
  Report,
  SignedAssignmentWire,
  TrustedKeysFile,
  decodeMessage,
  decodeSignedAssignment,
  generateBoxKeys,
  type BoxKeys,
  type SignedAssignment,
  type TrustedKeys,
} from "@netfleet/shared";
import { UnsafePathError, writeOwned } from "../write-owned.ts";

const { O_RDONLY, O_WRONLY, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants;

const BoxKeysFile = z.strictObject({ privateKeyPem: z.string(), publicKey: z.string() });

/** signing-keys.json: the trusted keys, and the id of the pinned key they were learned from (another pin starts over from it). */
const TrustFile = z.strictObject({ pinnedKeyId: z.string().regex(/^[0-9a-f]{16}$/), trust: TrustedKeysFile });

const CheckpointFile = z.strictObject({
  current: SignedAssignmentWire.optional(),
  previous: SignedAssignmentWire.optional(),
  /** Being applied and not yet confirmed: written here by agents before pending.json (AgentState.markPending); read, never written. */
  pending: SignedAssignmentWire.optional(),
  /** The last revision undone by lockout protection, or a saved plan refused (the host changed since): not applied again. */
  rolledBack: z.strictObject({ revision: z.number().int(), hash: z.string() }).optional(),
  /** A report not yet delivered (a rollback happens while NATS is unreachable). */
  unsentReport: Report.optional(),
});

/** The marker file of the revision being applied (AgentState.markPending). */
export const PENDING_FILE = "pending.json";

/** pending.json: the revision being applied and its document hash; nothing is ever applied from it. */
const PendingFile = z.strictObject({ revision: z.number().int().nonnegative(), hash: z.string().max(128) });

/** The revision being applied and not yet confirmed (its document hash): a marker, never applied from. */
export interface PendingMark {
  revision: number;
  hash: string;
}

/** What AgentState.pendingMark() found: no marker (undefined), a valid one, or one ignored and why (a symlink, a FIFO, garbage...). */
export type PendingMarkRead = { mark: PendingMark } | { ignored: string } | undefined;

/** pending.json's length (bytes): every marker is written as one record of this size (JSON, spaces, a newline), over the last in place. */
const PENDING_RECORD_BYTES = 256;

/** Largest pending.json read (bytes). */
const PENDING_MAX_BYTES = 4096;

/** What the agent keeps across restarts. Assignments here were verified before they were written. */
export interface Checkpoint {
  current?: SignedAssignment;
  previous?: SignedAssignment;
  /**
   * A revision that was being applied when the agent stopped or died, not
   * confirmed (read from pending.json, or from a checkpoint an earlier agent
   * wrote with its envelope): FleetMember.start() logs it and drops it.
   * Never written into checkpoint.json (saveCheckpoint leaves it out).
   */
  pending?: PendingMark;
  rolledBack?: { revision: number; hash: string };
  unsentReport?: Report;
}

/**
 * The agent's files in its run dir (0700, set back to it when found wider; files 0600, each written to a
 * temp file of its own and renamed, so two writers never share one):
 * its enrollment key, its NATS credentials, the checkpoint, and the
 * controller signing keys it learned from the key chain (signing-keys.json).
 */
export class AgentState {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * The enrollment key pair (welcomes are sealed to its public half); made and kept on first use
   * (enroll-key.json), then held by this object: a key pair never changes once written, and the
   * same object lets openSealed reuse its parsed private key (an agent reads it when enrolling,
   * and twice at each connection: its rekey answerer and its facts).
   */
  boxKeys(): Promise<BoxKeys> {
    const held = (this.heldBoxKeys ??= (async () => {
      const existing = await this.readJson("enroll-key.json");
      if (existing !== undefined) return BoxKeysFile.parse(existing);
      const keys = generateBoxKeys();
      await this.writeJson("enroll-key.json", keys);
      return keys;
    })());
    // A read or write that failed is not kept: the next call tries again.
    held.catch(() => {
      if (this.heldBoxKeys === held) this.heldBoxKeys = undefined;
    });
    return held;
  }
  private heldBoxKeys: Promise<BoxKeys> | undefined;

  /** The NATS credentials the welcome carried; undefined before enrollment. */
  async credentials(): Promise<AgentCredentials | undefined> {
    const raw = await this.readJson("credentials.json");
    return raw === undefined ? undefined : decodeMessage(AgentCredentials, join(this.dir, "credentials.json"), JSON.stringify(raw));
  }

  /** Keeps the welcome's credentials. */
  saveCredentials(credentials: AgentCredentials): Promise<void> {
    return this.writeJson("credentials.json", credentials);
  }

  /**
   * The controller keys learned from the signed key chain (shared
   * signing.ts TrustedKeys) and the pinned key they started from; undefined
   * before any was learned (the pinned key alone is trusted then).
   * @throws ZodError for a file that does not parse (never repaired here: a broken trust file is an operator's matter).
   */
  async trustedKeys(): Promise<{ pinnedKeyId: string; trust: TrustedKeys } | undefined> {
    const raw = await this.readJson("signing-keys.json");
    return raw === undefined ? undefined : TrustFile.parse(raw);
  }

  /** Keeps the trusted keys learned starting from the pinned key `pinnedKeyId` (0600, atomically). */
  saveTrustedKeys(pinnedKeyId: string, trust: TrustedKeys): Promise<void> {
    return this.writeJson("signing-keys.json", { pinnedKeyId, trust });
  }

  /**
   * The checkpoint; `{}` when there is none yet. Throws on a file that does
   * not parse. `pending` is the revision pending.json marks when it is newer
   * than both `current` and `rolledBack` (a marker at or below them was
   * settled: confirmed, undone or refused; a marker is never removed per
   * apply, see markPending), or the envelope an earlier agent kept in the
   * checkpoint itself; a marker that is not valid is no pending revision
   * (recoverCheckpoint logs why, pendingMark()).
   */
  checkpoint(): Promise<Checkpoint> {
    return this.readCheckpoint(() => this.pendingMark());
  }

  /** checkpoint(), with pending.json read by `mark` (called at most once, only when the checkpoint names no pending revision). */
  private async readCheckpoint(mark: () => PendingMarkRead): Promise<Checkpoint> {
    const raw = await this.readJson("checkpoint.json");
    const out: Checkpoint = {};
    if (raw !== undefined) {
      const file = CheckpointFile.parse(raw);
      const envelope = (e: unknown) => (e === undefined ? undefined : (decodeSignedAssignment("checkpoint", JSON.stringify(e)) as SignedAssignment));
      const current = envelope(file.current);
      const previous = envelope(file.previous);
      const pending = envelope(file.pending);
      if (current) out.current = current;
      if (previous) out.previous = previous;
      if (pending) out.pending = { revision: pending.revision, hash: pending.assignment.hash };
      if (file.rolledBack) out.rolledBack = file.rolledBack;
      if (file.unsentReport) out.unsentReport = file.unsentReport;
    }
    if (!out.pending) {
      const read = mark();
      if (read && "mark" in read && read.mark.revision > Math.max(out.current?.revision ?? 0, out.rolledBack?.revision ?? 0)) out.pending = read.mark;
    }
    return out;
  }

  /**
   * The checkpoint to start from (checkpoint()), with a revision
   * interrupted before its confirmation dropped (logged
   * `unconfirmed-revision-dropped`: the daemon starts from `current`, and
   * that revision is fetched, applied and confirmed again) and pending.json
   * removed; a marker that is ignored or cannot be removed is logged
   * (`pending-mark-ignored`), never thrown.
   * @throws what checkpoint() and saveCheckpoint throw.
   */
  async recoverCheckpoint(log: (event: Record<string, unknown>) => void): Promise<Checkpoint> {
    // pending.json is read once, here, and that one reading serves both the checkpoint and the log.
    const mark = this.pendingMark();
    const checkpoint = await this.readCheckpoint(() => mark);
    const file = join(this.dir, PENDING_FILE);
    if (mark && "ignored" in mark) log({ event: "pending-mark-ignored", file, reason: mark.ignored });
    if (checkpoint.pending) {
      log({ event: "unconfirmed-revision-dropped", revision: checkpoint.pending.revision });
      delete checkpoint.pending;
      // Written again: an earlier agent may have kept it in the checkpoint itself (saveCheckpoint never writes it).
      await this.saveCheckpoint(checkpoint);
    }
    if (mark) {
      try {
        this.clearPendingMark();
      } catch (err) {
        log({ event: "pending-mark-ignored", file, reason: `cannot be removed: ${(err as Error).message}` });
      }
    }
    return checkpoint;
  }

  /**
   * Replaces the checkpoint (atomically, fsynced, the directory too:
   * writeOwned). `pending` is never written (it lives in pending.json).
   */
  saveCheckpoint(checkpoint: Checkpoint): Promise<void> {
    const { pending: _marker, ...kept } = checkpoint;
    return this.writeJson("checkpoint.json", kept);
  }

  /**
   * Marks `mark` as being applied: pending.json in the run dir, one record
   * of PENDING_RECORD_BYTES (the JSON padded with spaces) written in place
   * over the last one at offset 0 (open(2) O_WRONLY|O_CREAT|O_NOFOLLOW|
   * O_NONBLOCK, mode 0600, one pwrite(2)): no fsync, no rename, no truncate,
   * so after the first apply no block is allocated or freed (~10 us of CPU
   * where a truncating write cost ~90 us and the fsynced, renamed checkpoint
   * it replaces ~350 us, measured on ext4); synchronous, as none of these
   * calls waits on the disk. It only tells the next start that an apply was
   * interrupted (the `unconfirmed-revision-dropped` log line): the start is
   * the same with or without it (the daemon starts from `current`; the
   * revision is fetched, applied and confirmed again), so losing it in a
   * crash, or finding it torn, costs that log line only. It is not removed
   * when the apply is settled: checkpoint() compares it with `current` and
   * `rolledBack`. A symlink there is not followed (ELOOP), a FIFO with no
   * reader is not waited on (ENXIO), anything else not a regular file is
   * refused, and a longer file (not written here) is cut to one record.
   * @throws UnsafePathError (not a regular file); Error for a marker that does not fit a record; the fs error (ELOOP, ENXIO, EISDIR, ENOSPC...).
   */
  markPending(mark: PendingMark): void {
    const path = join(this.dir, PENDING_FILE);
    const json = Buffer.from(JSON.stringify({ revision: mark.revision, hash: mark.hash }), "utf8");
    if (json.length >= PENDING_RECORD_BYTES) throw new Error(`${path}: a marker of ${json.length} bytes does not fit a record of ${PENDING_RECORD_BYTES}`);
    const record = Buffer.alloc(PENDING_RECORD_BYTES, " ");
    json.copy(record);
    record[PENDING_RECORD_BYTES - 1] = 0x0a;
    const fd = openSync(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o600);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new UnsafePathError(path, "is not a regular file");
      if (st.size > PENDING_RECORD_BYTES) ftruncateSync(fd, PENDING_RECORD_BYTES);
      writeSync(fd, record, 0, record.length, 0);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * What pending.json holds: undefined when absent; `{ mark }` for a valid
   * marker; `{ ignored: why }` for a symlink (never followed), anything not
   * a regular file (a FIFO is never opened for reading, so never waited
   * on), a file too large or unreadable, or content that is not a marker.
   * Synchronous: lstat(2), open(2) O_NOFOLLOW|O_NONBLOCK, fstat(2), read(2).
   */
  pendingMark(): PendingMarkRead {
    const path = join(this.dir, PENDING_FILE);
    let at;
    try {
      at = lstatSync(path, { throwIfNoEntry: false });
    } catch (err) {
      return { ignored: `cannot be read: ${(err as Error).message}` };
    }
    if (!at) return undefined;
    if (at.isSymbolicLink()) return { ignored: "is a symbolic link (not followed)" };
    if (!at.isFile()) return { ignored: "is not a regular file" };
    let fd: number;
    try {
      fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      return { ignored: `cannot be read: ${(err as Error).message}` };
    }
    let text: string;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return { ignored: "is not a regular file" };
      if (st.size > PENDING_MAX_BYTES) return { ignored: `is ${st.size} bytes, more than a marker (${PENDING_MAX_BYTES})` };
      const buf = Buffer.alloc(st.size);
      let got = 0;
      for (let n = 1; got < buf.length && n > 0; got += n) n = readSync(fd, buf, got, buf.length - got, got);
      text = buf.toString("utf8", 0, got);
    } catch (err) {
      return { ignored: `cannot be read: ${(err as Error).message}` };
    } finally {
      closeSync(fd);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { ignored: "is not JSON" };
    }
    const parsed = PendingFile.safeParse(value);
    return parsed.success ? { mark: parsed.data } : { ignored: "is not a {revision, hash} marker" };
  }

  /** Removes pending.json (unlink(2): a symlink there is removed, never followed); absent is fine. @throws the fs error (EISDIR, EACCES...). */
  clearPendingMark(): void {
    try {
      unlinkSync(join(this.dir, PENDING_FILE));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }

  private async readJson(name: string): Promise<unknown> {
    const file = join(this.dir, name);
    // A file that is absent (signing-keys.json until a key rotation, everything before enrollment) answers without a
    // rejected read: the ENOENT error and its stack cost some 0.1 ms per read, once per agent (issue 18: 0.56 s of one
    // bench process's rollout with 5,000 agents). stat(2) gives undefined only for ENOENT and throws any other error
    // (EACCES, ENOTDIR) as the read did; a file removed between the two calls still reads as absent below.
    const found = statSync(file, { throwIfNoEntry: false });
    if (found === undefined) return undefined;
    try {
      // A regular file (these are a few KB, on the host's own disk) is read at once: readFileSync is open, fstat, read and
      // close in one go, where fs/promises readFile makes a FileHandle and goes round the thread pool for each of them
      // (issue 18: 1.5 s of one bench process's 5,000 enrollments). Anything else keeps the thread pool's read, which
      // never blocks the event loop (a FIFO there waits for a writer).
      return JSON.parse(found.isFile() ? readFileSync(file, "utf8") : await readFile(file, "utf8"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  private async writeJson(name: string, value: unknown): Promise<void> {
    // One stat(2) per write, from the dentry cache (the dir is made only when missing), where a recursive mkdir(2)
    // and a stat cost two thread-pool round trips on every write (issue 18: two checkpoint writes per apply).
    // A missing dir is made synchronously too: mkdir(2) changes the dentry and inode caches and the journal's running
    // transaction without waiting for the disk (as writeOwned's open and rename), where the CPU profile of one bench
    // process put 1.25 s of its main thread in fs/promises' mkdir over its 5,000 enrollments (250 us each).
    // mkdir's mode applies only to a dir it creates: one that exists wider (made by a package, by hand) is set back,
    // as credentials and the enrollment key live in it.
    let found = statSync(this.dir, { throwIfNoEntry: false });
    if (!found) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      found = statSync(this.dir);
    }
    if ((found.mode & 0o777) !== 0o700) await chmod(this.dir, 0o700);
    const file = join(this.dir, name);
    await writeOwned(file, JSON.stringify(value, null, 2), 0o600);
  }
}
