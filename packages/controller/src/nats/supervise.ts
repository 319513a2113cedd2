import { statfs } from "node:fs/promises";
import { isStoreFull } from "../store/kv.ts";

/** Below this many free bytes on the state dir's file system, serve calls the disk full (default). */
export const MIN_FREE_BYTES = 1 << 20;

/**
 * Free bytes on the file system holding `path`, for this process:
 * statfs(2) f_bfree (root may use the blocks reserved for it) or
 * f_bavail (anyone else), times f_bsize. Undefined when statfs fails.
 */
export async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path);
    return (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize;
  } catch {
    return undefined;
  }
}

/**
 * Watches the free space of the file system holding `path` every
 * `intervalMs` (default 1000) and calls `onFull(path)` once when it drops
 * under `minFreeBytes` (default 1 MiB). Returns the function that stops it.
 *
 * Why serve watches instead of waiting for an error: nats-server 2.9.10,
 * its JetStream file store out of space on a tmpfs, logs nothing, answers
 * KV writes with nothing (client timeouts), blocks /jsz, ignores SIGTERM,
 * and stays so after the space is freed (measured on loopback: five puts
 * after freeing all timed out at 5 s). Only a restart of the server helps.
 */
export function watchDisk(path: string, onFull: (path: string) => void, o: { intervalMs?: number; minFreeBytes?: number } = {}): () => void {
  const min = o.minFreeBytes ?? MIN_FREE_BYTES;
  let fired = false;
  const timer = setInterval(() => {
    void freeBytes(path).then((free) => {
      if (fired || free === undefined || free >= min) return;
      fired = true;
      clearInterval(timer);
      onFull(path);
    });
  }, o.intervalMs ?? 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * The path a control-plane log event says is full, if it reports a full
 * disk: an `error` text `disk full: <path>` (DiskFullError's message, from
 * a state-dir write), or a JetStream "insufficient resources" error (then
 * `storeDir`, the store that could not grow).
 */
export function diskFullIn(event: Record<string, unknown>, storeDir: string): string | undefined {
  const error = event.error;
  if (typeof error !== "string") return undefined;
  const m = /disk full: (.+)$/.exec(error);
  if (m) return m[1];
  return isStoreFull(new Error(error)) ? storeDir : undefined;
}
