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
 */
export function consoleOutput(json: boolean): CommandOutput {
  return {
    json,
    line: (text) => process.stdout.write(text + "\n"),
    error: (text) => process.stderr.write(json ? jsonErrorLine(text) : text + "\n"),
    emit: (value) => process.stdout.write(safeJson(value) + "\n"),
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
