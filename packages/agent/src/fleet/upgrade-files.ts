import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { z } from "zod";

/**
 * Writes `data` to `path` atomically with exactly `mode`: a fresh temp file
 * beside it under a random name, opened O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW
 * (open(2): fails on anything already there, follows no link), fchmod(2)
 * (the umask changes nothing), written, fsync(2), rename(2) over `path`
 * (which replaces a link there rather than following it), fsync of the
 * directory. The temp file is removed on failure.
 * @throws the fs error (ENOSPC, EACCES, ...).
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    fchmodSync(fd, mode);
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  fsyncDir(path);
}

/**
 * The files of an agent upgrade, beside the bundle the agent runs (`P`,
 * e.g. /opt/netfleet/agent.mjs); none of them is secret, so all are 0644:
 *
 *   P                 the bundle in force (what the supervisor starts)
 *   P.next            a verified new bundle, staged by the running agent
 *   P.prev            the bundle before the last upgrade (kept, for the revert)
 *   P.failed          a bundle that was reverted (kept for a look)
 *   P.upgrade.json    the UpgradeMarker: where the upgrade stands
 *
 * Every write is writeFileAtomic: a fresh temp file opened with
 * O_CREAT|O_EXCL|O_NOFOLLOW, fchmod, fsync, rename(2) over the name, fsync
 * of the directory; so a crash leaves either the old or the new file,
 * never a partial one, and no planted link is followed.
 */
export interface UpgradePaths {
  current: string;
  next: string;
  prev: string;
  failed: string;
  marker: string;
}

/** The upgrade files of the bundle at `current`. */
export function upgradePaths(current: string): UpgradePaths {
  return { current, next: `${current}.next`, prev: `${current}.prev`, failed: `${current}.failed`, marker: `${current}.upgrade.json` };
}

const Version = z.strictObject({ version: z.string().max(64), sha256: z.string().regex(/^[0-9a-f]{64}$/) });

/**
 * Where an upgrade stands (P.upgrade.json):
 * "staged"    the running agent wrote P.next (verified) and stops itself;
 * "trying"    the supervisor moved P to P.prev and P.next to P, and started
 *             it; it has `trialS` from `trialStartedAt` to report;
 * "committed" the new version reported (it wrote this);
 * "reverted"  the new version exited or did not report in time: P.prev is P
 *             again, the failed bundle is P.failed; `reason` says why.
 */
export const UpgradeMarker = z.strictObject({
  state: z.enum(["staged", "trying", "committed", "reverted"]),
  from: Version,
  to: Version.extend({ revision: z.number().int().min(1) }),
  trialS: z.number().int().min(1),
  trialStartedAt: z.string().optional(),
  reason: z.string().max(2000).optional(),
  at: z.string(),
});
export type UpgradeMarker = z.output<typeof UpgradeMarker>;

/** The marker, or undefined when there is none or it does not read (an unreadable marker is treated as none). */
export function readMarker(paths: UpgradePaths): UpgradeMarker | undefined {
  try {
    return UpgradeMarker.parse(JSON.parse(readFileSync(paths.marker, "utf8")));
  } catch {
    return undefined;
  }
}

/** Writes the marker (0644, atomically). */
export async function writeMarker(paths: UpgradePaths, marker: Omit<UpgradeMarker, "at">): Promise<UpgradeMarker> {
  const full = UpgradeMarker.parse({ ...marker, at: new Date().toISOString() });
  writeFileAtomic(paths.marker, JSON.stringify(full) + "\n", 0o644);
  return full;
}

/** SHA-256 (hex) of a file, undefined when it cannot be read. */
export function fileSha256(path: string): string | undefined {
  try {
    return createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch {
    return undefined;
  }
}

function fsyncDir(path: string): void {
  const fd = openSync(dirname(path), "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The supervisor's swap: checks P.next against the marker's sha256, keeps P
 * as P.prev (a copy, so P is never missing), renames P.next over P (rename(2)
 * is atomic), and marks the upgrade "trying". A P.next that does not match
 * is removed and the upgrade marked "reverted".
 * @returns the marker written.
 */
export async function swapIn(paths: UpgradePaths, marker: UpgradeMarker): Promise<UpgradeMarker> {
  const staged = fileSha256(paths.next);
  if (staged !== marker.to.sha256) {
    rmSync(paths.next, { force: true });
    return writeMarker(paths, { ...marker, state: "reverted", reason: `staged bundle ${staged ? `has sha256 ${staged}` : "is missing"}, not ${marker.to.sha256}: not started` });
  }
  writeFileAtomic(paths.prev, readFileSync(paths.current), 0o644);
  renameSync(paths.next, paths.current);
  fsyncDir(paths.current);
  return writeMarker(paths, { ...marker, state: "trying", trialStartedAt: new Date().toISOString() });
}

/**
 * The supervisor's revert: the bundle in force is kept as P.failed and P.prev
 * is renamed over P; the marker says "reverted" with `reason`. Without a
 * P.prev nothing is moved (the reason says so).
 */
export async function revertUpgrade(paths: UpgradePaths, marker: UpgradeMarker, reason: string): Promise<UpgradeMarker> {
  if (!existsSync(paths.prev)) return writeMarker(paths, { ...marker, state: "reverted", reason: `${reason}; no previous bundle kept, nothing to put back` });
  writeFileAtomic(paths.failed, readFileSync(paths.current), 0o644);
  renameSync(paths.prev, paths.current);
  fsyncDir(paths.current);
  return writeMarker(paths, { ...marker, state: "reverted", reason });
}
