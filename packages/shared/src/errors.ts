/** A place in an input file, 1-based like editors show it. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** One problem in an input, reported as `file:line:col: path: message`. */
export interface InputProblem extends SourcePosition {
  /** Dotted path inside the document, e.g. `networks.secure.gateway`. */
  path: string;
  message: string;
}

/**
 * Characters that can change what a terminal or a CI log shows beyond their
 * own cell: C0 controls (newline, carriage return, ESC starting an ANSI
 * sequence), DEL, C1 controls (U+0085 NEL is a line break to some readers),
 * the Unicode line and paragraph separators U+2028/U+2029, and the bidi
 * controls (U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates,
 * U+200E/U+200F/U+061C marks) that reorder the text after them
 * (CVE-2021-42574, "Trojan Source").
 */
const UNSAFE_CLASS = "[\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]";
const UNSAFE = new RegExp(UNSAFE_CLASS, "u");
const UNSAFE_ALL = new RegExp(UNSAFE_CLASS, "gu");
const SHORT: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** One unsafe character as a visible escape: `\n`, `\x1b`, `\u{202e}`. */
function escapeChar(c: string): string {
  const short = SHORT[c];
  if (short) return short;
  const code = c.codePointAt(0)!;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

/**
 * `text` with every character that could break a line, start a terminal
 * escape sequence or reorder the display (see UNSAFE) written as a visible
 * escape, so text from an input file printed inside a message stays on its
 * own line and shows what it holds. Idempotent: escaped text has nothing left
 * to escape. Backslashes are left as they are (use `quoteToken` where the
 * token must be read back unambiguously).
 */
export function escapeText(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escapeChar) : text;
}

/** At most this many characters of a token from an input are shown in a message. */
export const TOKEN_MAX_CHARS = 60;

/**
 * A token from an input file (a key, a name, a value) for a message:
 * shortened to its first `max` characters (code points) with `...` after the
 * closing quote when it was longer, backslash and double quote escaped as in
 * JSON, and every unsafe character escaped as `escapeText` does. For plain
 * ASCII tokens this is exactly `JSON.stringify(token)`.
 *
 *   quoteToken("hosts")          -> "hosts"
 *   quoteToken("a\nb\x1b[2J")    -> "a\nb\x1b[2J"     (escapes visible)
 *   quoteToken("x".repeat(100))  -> "xxx...x"...      (60 x, then ...)
 */
export function quoteToken(token: string, max = TOKEN_MAX_CHARS): string {
  let shown = token;
  let cut = false;
  if (token.length > max) {
    // A code point is one or two UTF-16 units: the first 2*max units hold
    // the first max code points, and a longer token surely has more.
    const chars = Array.from(token.slice(0, 2 * max));
    if (chars.length > max || token.length > 2 * max) {
      shown = chars.slice(0, max).join("");
      cut = true;
    }
  }
  return `"${escapeText(shown.replace(/[\\"]/g, (c) => `\\${c}`))}"${cut ? "..." : ""}`;
}

/**
 * `file:line:col: path: message`, always one line: the file name, path and
 * message are passed through `escapeText`, so a newline, an ANSI escape or a
 * bidi override from an input file (its name, a key) is shown escaped and can
 * neither forge another problem line nor hide part of this one.
 */
export function formatProblem(p: InputProblem): string {
  return `${escapeText(p.file)}:${p.line}:${p.col}: ${escapeText(p.path) || "(document)"}: ${escapeText(p.message)}`;
}

/** Bad inventory: every problem found, in file order. Nothing was changed anywhere. */
export class InventoryError extends Error {
  readonly problems: InputProblem[];
  constructor(problems: InputProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "InventoryError";
    this.problems = problems;
  }
}

/** A message from the wire (NATS) or a document that does not decode. */
export class DecodeError extends Error {
  readonly source: string;
  readonly path: string;
  constructor(source: string, path: string, message: string) {
    super(`${source}: ${path || "(document)"}: ${message}`);
    this.name = "DecodeError";
    this.source = source;
    this.path = path;
  }
}

/** Output of a system tool that we could not understand; the resource is not touched. */
export class ParseError extends Error {
  readonly tool: string;
  readonly detail: string;
  constructor(tool: string, detail: string, options?: { cause?: unknown }) {
    super(`cannot parse output of ${tool}: ${detail}`, options);
    this.name = "ParseError";
    this.tool = tool;
    this.detail = detail;
  }
}
