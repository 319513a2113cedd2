import { Option, type Command } from "commander";
import { optionValue, usageError } from "@netfleet/shared/cli";
import type { CommandOutput } from "../output.ts";
import { parseLimit } from "../select/limit.ts";

/**
 * What every command handler gets besides its arguments: where its output
 * goes. Handlers import their command module when they run, so that
 * `--help`, `--version` and `completion` start without loading them.
 */
export interface Context {
  /** Human lines, or JSON documents with --json. */
  output(json: boolean): CommandOutput;
}

/** `--json`, on the commands that have a machine-readable form. */
export function jsonOption(what = "machine-readable output: one JSON document"): Option {
  return new Option("--json", what);
}

/** `--state-dir`, on the commands that use the controller's state. */
export function stateDirOption(): Option {
  return new Option("--state-dir <dir>", "the site's secrets, agent credentials and the nats-server data of serve (default $NETFLEET_STATE_DIR or /var/lib/netfleet)");
}

/** `--nats`, on the commands that connect to the controller's NATS (or, for serve and bootstrap, name it). */
export function natsOption(what = "NATS servers to connect to (default those serve recorded in the state dir, else the site's site.nats)"): Option {
  return new Option("--nats <urls>", `${what}; nats://host:port[,nats://host:port...]`);
}

/**
 * The value `parse` makes of an option's text, checked when the command
 * runs (for parsers that live in command modules, loaded only then); an
 * Error it throws becomes a usage error of `cmd` (exit 64) with its message.
 */
export function checked<T>(cmd: Command, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    usageError(cmd, (err as Error).message);
  }
}

/**
 * A whole number from `min` to `max` for option `flag`.
 * @throws Error naming the flag and the range.
 */
export function wholeNumber(flag: string, min: number, max = Number.MAX_SAFE_INTEGER): (text: string) => number {
  return optionValue((text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} takes a whole number${max === Number.MAX_SAFE_INTEGER ? ` >= ${min}` : ` from ${min} to ${max}`}`);
    return n;
  });
}

/**
 * A positive number of seconds for option `flag`, returned in milliseconds.
 * @throws Error naming the flag.
 */
export function seconds(flag: string): (text: string) => number {
  return optionValue((text) => {
    const n = Number(text);
    if (!(n > 0)) throw new Error(`${flag} takes a number of seconds`);
    return n * 1000;
  });
}

/**
 * The terms of `--limit` (split on `,` and `:`, blanks dropped, each with its `&` or `!`),
 * checked by select/limit.ts parseLimit: a term it cannot read is a usage error (exit 64).
 */
export const patternList = optionValue((text: string): string[] => parseLimit(text).map((t) => t.text));

/** The help of `--limit`, the same on every command that has it. */
export const LIMIT_HELP =
  "only these hosts: host, group or role globs (* ?) and label selectors (rack=a), separated by , or :; &PATTERN keeps only hosts that also match it, !PATTERN drops those that match it (e.g. 'vmhost:&rack=a:!hv3')";

/** `--limit`, as plan, compile and status take it. */
export function limitOption(): Option {
  return new Option("--limit <patterns>", LIMIT_HELP).argParser(patternList);
}
