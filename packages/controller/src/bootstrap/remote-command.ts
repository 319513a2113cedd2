/**
 * The one place where a remote command line is made. SSH `exec` takes a
 * string that the remote user's shell parses, so every argv token is
 * checked here and wrapped in single quotes (the only quoting in POSIX sh
 * with no special characters inside; a `'` becomes `'\''`). Callers pass
 * argv arrays built from names they validated; nothing else reaches a shell.
 */

export class UnsafeTokenError extends Error {
  readonly token: string;
  constructor(token: string, why: string) {
    super(`refusing to send ${JSON.stringify(token)} to a remote shell: ${why}`);
    this.name = "UnsafeTokenError";
    this.token = token;
  }
}

/** Single-quotes one token for POSIX sh. Refuses NUL, line breaks and other control characters. */
export function shellQuote(token: string): string {
  if (token.length === 0) return "''";
  if (token.length > 4096) throw new UnsafeTokenError(token.slice(0, 40) + "...", "longer than 4096 characters");
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(token)) throw new UnsafeTokenError(token, "contains a control character");
  return `'${token.replace(/'/g, `'\\''`)}'`;
}

/** `argv` as one command line for `ssh exec`: every token single-quoted, joined by spaces. */
export function remoteCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new UnsafeTokenError("", "empty command");
  if (!PROGRAM.test(argv[0]!)) throw new UnsafeTokenError(argv[0]!, "a program is a plain name or an absolute path");
  return argv.map(shellQuote).join(" ");
}

const PROGRAM = /^(?:[A-Za-z0-9_.+-]+|(?:\/[A-Za-z0-9_.+-]+)+)$/;

/** An absolute path of plain segments (no `..`, no spaces, no shell characters). */
export const SAFE_PATH = /^(?:\/[A-Za-z0-9_.+@-]+)+$/;

export function assertSafePath(path: string, what = "path"): string {
  if (!SAFE_PATH.test(path) || path.split("/").some((s) => s === ".." || s === ".")) throw new UnsafeTokenError(path, `${what} must be an absolute path of plain names`);
  return path;
}
