import { statSync } from "node:fs";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
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
import { writeOwned } from "../write-owned.ts";

const BoxKeysFile = z.strictObject({ privateKeyPem: z.string(), publicKey: z.string() });

/** signing-keys.json: the trusted keys, and the id of the pinned key they were learned from (another pin starts over from it). */
const TrustFile = z.strictObject({ pinnedKeyId: z.string().regex(/^[0-9a-f]{16}$/), trust: TrustedKeysFile });

const CheckpointFile = z.strictObject({
  current: SignedAssignmentWire.optional(),
  previous: SignedAssignmentWire.optional(),
  /** Being applied and not yet confirmed. */
  pending: SignedAssignmentWire.optional(),
  /** The last revision undone by lockout protection, or a saved plan refused (the host changed since): not applied again. */
  rolledBack: z.strictObject({ revision: z.number().int(), hash: z.string() }).optional(),
  /** A report not yet delivered (a rollback happens while NATS is unreachable). */
  unsentReport: Report.optional(),
});

/** What the agent keeps across restarts. Assignments here were verified before they were written. */
export interface Checkpoint {
  current?: SignedAssignment;
  previous?: SignedAssignment;
  pending?: SignedAssignment;
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

  /** The enrollment key pair (welcomes are sealed to its public half); made and kept on first use. */
  async boxKeys(): Promise<BoxKeys> {
    const existing = await this.readJson("enroll-key.json");
    if (existing !== undefined) return BoxKeysFile.parse(existing);
    const keys = generateBoxKeys();
    await this.writeJson("enroll-key.json", keys);
    return keys;
  }

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

  /** The checkpoint; `{}` when there is none yet. Throws on a file that does not parse. */
  async checkpoint(): Promise<Checkpoint> {
    const raw = await this.readJson("checkpoint.json");
    if (raw === undefined) return {};
    const file = CheckpointFile.parse(raw);
    const envelope = (e: unknown) => (e === undefined ? undefined : (decodeSignedAssignment("checkpoint", JSON.stringify(e)) as SignedAssignment));
    const out: Checkpoint = {};
    const current = envelope(file.current);
    const previous = envelope(file.previous);
    const pending = envelope(file.pending);
    if (current) out.current = current;
    if (previous) out.previous = previous;
    if (pending) out.pending = pending;
    if (file.rolledBack) out.rolledBack = file.rolledBack;
    if (file.unsentReport) out.unsentReport = file.unsentReport;
    return out;
  }

  /**
   * Replaces the checkpoint (atomically: writeOwned). `o.syncDirectory:
   * false` leaves out the directory's fsync, so that after a crash the
   * checkpoint may still be the one before this write (whole either way):
   * only for a write whose loss is harmless (see FleetMember.apply, the
   * pending revision).
   */
  saveCheckpoint(checkpoint: Checkpoint, o: { syncDirectory?: boolean } = {}): Promise<void> {
    return this.writeJson("checkpoint.json", checkpoint, o);
  }

  private async readJson(name: string): Promise<unknown> {
    const file = join(this.dir, name);
    // A file that is absent (signing-keys.json until a key rotation, everything before enrollment) answers without a
    // rejected read: the ENOENT error and its stack cost some 0.1 ms per read, once per agent (issue 18: 0.56 s of one
    // bench process's rollout with 5,000 agents). stat(2) gives undefined only for ENOENT and throws any other error
    // (EACCES, ENOTDIR) as the read did; a file removed between the two calls still reads as absent below.
    if (statSync(file, { throwIfNoEntry: false }) === undefined) return undefined;
    try {
      return JSON.parse(await readFile(file, "utf8"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  private async writeJson(name: string, value: unknown, o: { syncDirectory?: boolean } = {}): Promise<void> {
    // One stat(2) per write, from the dentry cache (the dir is made only when missing), where a recursive mkdir(2)
    // and a stat cost two thread-pool round trips on every write (issue 18: two checkpoint writes per apply).
    // mkdir's mode applies only to a dir it creates: one that exists wider (made by a package, by hand) is set back,
    // as credentials and the enrollment key live in it.
    let found = statSync(this.dir, { throwIfNoEntry: false });
    if (!found) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      found = await stat(this.dir);
    }
    if ((found.mode & 0o777) !== 0o700) await chmod(this.dir, 0o700);
    const file = join(this.dir, name);
    await writeOwned(file, JSON.stringify(value, null, 2), 0o600, o);
  }
}
