import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import writeFileAtomic from "write-file-atomic";

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
 * Writes a JSON file that holds secrets: its folder made 0700 if missing,
 * the file 0600, written to a unique temp file and renamed over (readers see
 * the old or the new file, never half of one).
 */
export async function writeSecretJson(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
}
