/** Where a command writes: human lines, or one JSON document with --json. */
export interface CommandOutput {
  json: boolean;
  line(text: string): void;
  error(text: string): void;
  emit(value: unknown): void;
}

/** Output to this process's stdout (lines, JSON documents) and stderr (errors). */
export function consoleOutput(json: boolean): CommandOutput {
  return {
    json,
    line: (text) => process.stdout.write(text + "\n"),
    error: (text) => process.stderr.write(text + "\n"),
    emit: (value) => process.stdout.write(safeJson(value) + "\n"),
  };
}

/**
 * Characters JSON.stringify leaves raw that a terminal or log viewer acts on:
 * DEL, C1 controls, U+2028/U+2029 (line breaks to many readers) and the bidi
 * controls. JSON.stringify already escapes C0 controls.
 */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `JSON.stringify(value, null, 2)` with the characters of JSON_UNSAFE written
 * as `\uXXXX` escapes: the same JSON value when parsed, but a key or file
 * name from an inventory cannot break or reorder a line of the printed
 * document. (These characters can only occur inside JSON strings, where
 * `\uXXXX` is always valid: RFC 8259 section 7.)
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
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
