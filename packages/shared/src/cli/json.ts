/**
 * Characters JSON.stringify leaves raw that a terminal or log viewer acts on:
 * DEL, C1 controls, U+2028/U+2029 (line breaks to many readers) and the bidi
 * controls. JSON.stringify already escapes C0 controls.
 */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `JSON.stringify(value, null, 2)` with the characters of JSON_UNSAFE written
 * as `\uXXXX` escapes: the same JSON value when parsed, but a key or file
 * name from an inventory, or a probe's stderr, cannot break or reorder a line of the printed
 * document. (These characters can only occur inside JSON strings, where
 * `\uXXXX` is always valid: RFC 8259 section 7.)
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** {@link safeJson} on one line (no indentation): a JSON line for a log or an error stream. */
export function safeJsonLine(value: unknown): string {
  return JSON.stringify(value).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
