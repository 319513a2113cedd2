import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Marks of the audit capture children: `<runDir>/audit/nflog-<group>.pid`
 * holds the pid of the capture we started for that nflog group. A group
 * takes one listener only (the kernel refuses a second bind: tcpdump says
 * "Can't listen on group index: Operation not permitted"), so a capture left
 * behind by an agent that was killed outright (SIGKILL, no cleanup) would
 * keep the group from the next agent until its next write failed. At start
 * the next agent stops it, but only when the marked pid still runs our exact
 * command line (/proc/<pid>/cmdline): a reused pid is never touched.
 */
export function captureMarker(runDir: string, group: number): string {
  return join(runDir, "audit", `nflog-${group}.pid`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The argv of a running process (linux /proc/<pid>/cmdline, NUL-separated), or undefined when it is gone. */
export async function processArgv(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return raw.length === 0 ? undefined : raw.replace(/\0$/, "").split("\0");
  } catch {
    return undefined;
  }
}

/**
 * Stops the capture a marker names when it still runs `argv` (SIGTERM, then
 * SIGKILL after `graceMs`); returns its pid when it did, else undefined. A
 * missing or unreadable marker, or a pid now running something else, is
 * left alone. Never throws.
 */
export async function stopMarkedCapture(marker: string, argv: readonly string[], graceMs = 2000): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await readFile(marker, "utf8")).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return undefined;
  const running = await processArgv(pid);
  if (!running || running.join("\0") !== argv.join("\0")) return undefined;
  try {
    process.kill(pid, "SIGTERM");
    for (let waited = 0; waited < graceMs && (await processArgv(pid)); waited += 50) await sleep(50);
    if (await processArgv(pid)) process.kill(pid, "SIGKILL");
  } catch {
    // Gone meanwhile.
  }
  return pid;
}

/** Writes the marker of a capture we started (mode 0644 in a 0755 dir). Never throws: a missing marker only costs the cleanup above. */
export async function markCapture(marker: string, pid: number): Promise<void> {
  try {
    await mkdir(join(marker, ".."), { recursive: true, mode: 0o755 });
    await writeFile(marker, `${pid}\n`, { mode: 0o644 });
  } catch {
    // Unwritable run dir: nothing to clean up later either.
  }
}

/** Removes the marker when it still names `pid` (a newer capture's marker stays). Never throws. */
export async function unmarkCapture(marker: string, pid: number): Promise<void> {
  try {
    if (Number((await readFile(marker, "utf8")).trim()) === pid) await rm(marker, { force: true });
  } catch {
    // Already gone.
  }
}
