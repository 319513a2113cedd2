import { jsonErrorLine, safeJson } from "@netfleet/shared/cli";

/** Where a command writes: human lines, or one JSON document with --json. */
export interface CommandOutput {
  json: boolean;
  line(text: string): void;
  error(text: string): void;
  emit(value: unknown): void;
}

/**
 * Output to this process's stdout (lines, JSON documents) and stderr (errors). With `json`, each error
 * line is a JSON line on stderr (`{"error":"..."}`, or `{"warning":...}`: jsonErrorLine), so stdout holds
 * only the command's JSON.
 *
 * The lines written in one run of JavaScript (a listing's loop over 10,000 hosts) go out as one write, at
 * the end of that run (a microtask): one write(2) instead of one per line. Lines still appear as they are
 * made across awaits (a rollout's progress), and an error or a JSON document first flushes the lines
 * before it, so the order of stdout and stderr is kept.
 */
export function consoleOutput(json: boolean): CommandOutput {
  let pending: string[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    const text = pending.join("");
    pending = [];
    process.stdout.write(text);
  };
  return {
    json,
    line: (text) => {
      if (pending.length === 0) queueMicrotask(flush);
      pending.push(text + "\n");
    },
    error: (text) => {
      flush();
      process.stderr.write(json ? jsonErrorLine(text) : text + "\n");
    },
    emit: (value) => {
      flush();
      process.stdout.write(safeJson(value) + "\n");
    },
  };
}

/** Collects output in memory (tests). */
export function memoryOutput(json: boolean): CommandOutput & { stdout: string[]; stderr: string[]; values: unknown[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const values: unknown[] = [];
  return {
    json,
    stdout,
    stderr,
    values,
    line: (t) => stdout.push(t),
    error: (t) => stderr.push(t),
    emit: (v) => values.push(v),
  };
}
