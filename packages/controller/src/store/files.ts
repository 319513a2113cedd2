import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * A JSON file of the controller's state dir, parsed; undefined when it does not exist.
 * @throws when it cannot be read or is not JSON.
 */
export async function readJsonFile(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * A write failed for lack of space (ENOSPC, or EDQUOT: over a quota) or a
 * JetStream store said it has no room: one line, `disk full: <path>`, the
 * path being the file or store that could not grow. An expected failure:
 * CLIs print the message, not a stack.
 */
export class DiskFullError extends Error {
  readonly path: string;
  constructor(path: string, options?: { cause?: unknown }) {
    super(`disk full: ${path}`, options);
    this.name = "DiskFullError";
    this.path = path;
  }
}

/** The DiskFullError for `path` when `err` is ENOSPC or EDQUOT (open(2), write(2)); undefined for any other error. */
export function diskFullError(err: unknown, path: string): DiskFullError | undefined {
  if (err instanceof DiskFullError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT" ? new DiskFullError(path, { cause: err }) : undefined;
}

/**
 * Writes a file of the state dir whole or not at all, with exactly `mode`:
 * its folder made (or set back to) 0700, then writeOwned (@netfleet/agent):
 * a fresh temp file of a random name (O_CREAT|O_EXCL|O_NOFOLLOW), fsynced
 * and renamed over, never through a symlink, the temp file unlinked when any
 * step fails, so a full disk leaves neither a partial file nor a 0-byte
 * temp file behind.
 * @throws DiskFullError naming `file` on ENOSPC/EDQUOT; UnsafePathError for a symlink at `file`; the write's error otherwise.
 */
export async function writeFileWhole(file: string, data: string, mode: number): Promise<void> {
  try {
    const dir = dirname(file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode applies only to a folder it creates.
    if (((await stat(dir)).mode & 0o777) !== 0o700) await chmod(dir, 0o700);
    // Loaded here, not at the top: @netfleet/agent's index pulls the whole agent (execa, prom-client, its
    // resources), ~400 modules that a reading command (status, hosts) loaded at start for nothing.
    const { writeOwned } = await import("@netfleet/agent");
    await writeOwned(file, data, mode);
  } catch (err) {
    throw diskFullError(err, file) ?? err;
  }
}

/**
 * Writes a JSON file that holds secrets: its folder made 0700 if missing,
 * the file 0600, written to a unique temp file and renamed over (readers see
 * the old or the new file, never half of one); see writeFileWhole.
 * @throws DiskFullError naming `file` when the disk is full.
 */
export async function writeSecretJson(file: string, value: unknown): Promise<void> {
  await writeFileWhole(file, JSON.stringify(value, null, 2) + "\n", 0o600);
}
