import { closeSync, constants, fstatSync, openSync, readSync, unwatchFile, watchFile } from "node:fs";
import { DecodeError, LogLevelError, createEventLog, decodeAssignment, renderChanges, resolveLogLevel, type HostAssignment, type LogLevel } from "@netfleet/shared";
import { AgentDaemon } from "./daemon.ts";
import { reconcilePass, summarize } from "./engine.ts";
import { ExecaRunner } from "./exec/runner.ts";
import type { ResourceResult } from "./resources/types.ts";
import type { Toolbox } from "./tools.ts";

/** An assignment file that cannot be used: nothing was changed (exit 2). */
export class AssignmentFileError extends Error {}

/** Why an assignment file cannot be read, by errno code: the operator's mistakes, not the agent's. */
const UNREADABLE: Record<string, string> = { ENOENT: "no such file", EACCES: "permission denied", EISDIR: "it is a folder", ENOTDIR: "a part of its path is not a folder" };

/** The largest assignment file read (a compiled assignment of a large site is a few MiB). */
export const ASSIGNMENT_MAX_BYTES = 16 * 1024 * 1024;

/**
 * An assignment file's text: opened with O_NONBLOCK (a FIFO cannot block
 * the open), fstat'ed on the open descriptor (a regular file only: not a
 * FIFO, device or folder, whatever a link points to), read up to
 * ASSIGNMENT_MAX_BYTES.
 * @throws AssignmentFileError naming the file and why; other fs errors as they are.
 */
function readAssignmentText(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === undefined ? undefined : UNREADABLE[code];
    if (reason !== undefined) throw new AssignmentFileError(`cannot read assignment ${file}: ${reason} (${code})`);
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new AssignmentFileError(`cannot read assignment ${file}: ${UNREADABLE.EISDIR} (EISDIR)`);
    if (!st.isFile()) throw new AssignmentFileError(`cannot read assignment ${file}: not a regular file (${st.isFIFO() ? "a FIFO" : st.isCharacterDevice() ? "a character device" : st.isBlockDevice() ? "a block device" : st.isSocket() ? "a socket" : "not a file"})`);
    if (st.size > ASSIGNMENT_MAX_BYTES) throw new AssignmentFileError(`cannot read assignment ${file}: it is ${st.size} bytes, more than the ${ASSIGNMENT_MAX_BYTES} an assignment may hold`);
    const buf = Buffer.alloc(Math.min(st.size, ASSIGNMENT_MAX_BYTES) + 1);
    let n = 0;
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, null)) > 0; ) n += r;
    if (n > ASSIGNMENT_MAX_BYTES) throw new AssignmentFileError(`cannot read assignment ${file}: more than the ${ASSIGNMENT_MAX_BYTES} bytes an assignment may hold`);
    return buf.subarray(0, n).toString("utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EISDIR") throw new AssignmentFileError(`cannot read assignment ${file}: ${UNREADABLE.EISDIR} (EISDIR)`);
    throw err;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and decodes an assignment file (readAssignmentText: a regular file of at most ASSIGNMENT_MAX_BYTES).
 * @throws AssignmentFileError when it is missing, unreadable (EACCES, a folder, ENOTDIR, a FIFO or device, too large)
 * or not a valid assignment, with a message naming the file; other fs errors as they are.
 */
export function readAssignment(file: string): HostAssignment {
  const text = readAssignmentText(file);
  try {
    return decodeAssignment(file, text);
  } catch (err) {
    if (err instanceof DecodeError) throw new AssignmentFileError(err.message);
    throw err;
  }
}

/** `apply --check` found changes pending (terraform's -detailed-exitcode convention). */
export const EXIT_PENDING = 2;
/** Some resource failed or was refused. */
export const EXIT_FAILED = 3;

/**
 * `netfleet-agent apply`: one reconcile pass (`check`: what would change,
 * nothing run that mutates), printed per resource (check mode: the unified
 * diff of each text resource, old -> new of every other field) or as JSON
 * (with `observed`, the observed-state hash). Returns the exit code: 0
 * converged (check mode: nothing to change), EXIT_PENDING (2) check mode
 * with changes pending, EXIT_FAILED (3) some resource failed.
 */
export async function applyOnce(assignment: HostAssignment, tools: Toolbox, o: { check: boolean; json: boolean }): Promise<number> {
  const started = performance.now();
  const { results, observed } = await reconcilePass(assignment.resources, { runner: new ExecaRunner(), tools, owner: assignment.site, check: o.check });
  const summary = summarize(results);
  const wallMs = Math.round(performance.now() - started);
  if (o.json) {
    process.stdout.write(JSON.stringify({ host: assignment.host, hash: assignment.hash, check: o.check, observed, summary, wallMs, results }, null, 2) + "\n");
  } else {
    for (const r of results) process.stdout.write(formatResult(r));
    process.stdout.write(`${assignment.host}: ${summary.ok} ok, ${summary.changed} changed, ${summary.pending} would change, ${summary.failed} failed (${wallMs} ms)\n`);
  }
  if (summary.failed > 0) return EXIT_FAILED;
  return summary.pending > 0 ? EXIT_PENDING : 0;
}

/**
 * One resource as `apply` prints it: a mark and its id, then each changed
 * field `name: old -> new` (values as JSON), then the unified diff of a text
 * resource, indented (@netfleet/shared renderChanges).
 */
export function formatResult(r: ResourceResult): string {
  const mark = r.result === false ? "FAILED " : r.result === null ? "CHANGE?" : r.changed ? "changed" : "ok     ";
  let text = `${mark} ${r.id}${r.comment && r.result !== true ? `: ${r.comment}` : ""}\n`;
  for (const line of renderChanges(r.changes, r.diff)) text += `          ${line}\n`;
  if (r.error) text += `          error: ${r.error}\n`;
  return text;
}

/**
 * `netfleet-agent run --assignment FILE`: keeps the host at FILE until
 * SIGTERM/SIGINT, following OVS and libvirt events and re-reading FILE when
 * it changes (a document refused by `hostCheck`, or one that does not
 * decode, changes nothing). Logs levelled JSON lines (level from
 * `timing.logLevel`, else NETFLEET_LOG_LEVEL, else info; a bad level in the
 * environment: one line, exit 2); stopping leaves the host as it is.
 */
export async function runFromFile(
  file: string,
  assignment: HostAssignment,
  tools: Toolbox,
  timing: { intervalMs: number; flowIntervalMs: number; logLevel?: LogLevel },
  hostCheck: (next: HostAssignment) => string | undefined,
): Promise<number> {
  let level: LogLevel;
  try {
    level = resolveLogLevel({ flag: timing.logLevel });
  } catch (err) {
    if (!(err instanceof LogLevelError)) throw err;
    process.stderr.write(`netfleet-agent run: ${err.message}\n`);
    return 2;
  }
  // Levelled JSON lines (shared log.ts, pino): the `event` key and ISO `ts` as before.
  const log = createEventLog({ level });
  const daemon = new AgentDaemon(assignment, { runner: new ExecaRunner(), tools, intervalMs: timing.intervalMs, flowIntervalMs: timing.flowIntervalMs, watchEvents: true, log });
  log({ event: "start", host: assignment.host, hash: assignment.hash, pid: process.pid });
  await daemon.start();
  watchFile(file, { interval: 1000 }, () => {
    try {
      const next = decodeAssignment(file, readAssignmentText(file));
      const refused = hostCheck(next);
      if (refused !== undefined) {
        log({ event: "assignment-rejected", error: refused });
        return;
      }
      if (next.hash !== assignment.hash) {
        assignment = next;
        log({ event: "assignment", hash: next.hash });
        void daemon.replace(next);
      }
    } catch (err) {
      // A bad document changes nothing: the host keeps its current state.
      log({ event: "assignment-rejected", error: (err as Error).message });
    }
  });
  await stopSignal();
  unwatchFile(file);
  await daemon.stop();
  log({ event: "stop", host: assignment.host });
  return 0;
}

/** Resolves on the first SIGTERM or SIGINT. */
export function stopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
}
