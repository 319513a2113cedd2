import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { safeJsonLine } from "./json.ts";

/** Exit code of a usage error (bad command, option or argument): sysexits.h EX_USAGE. */
export const EXIT_USAGE = 64;

/** Where a program writes: whole chunks as commander produces them, newline included. */
export interface ProgramIo {
  out(text: string): void;
  err(text: string): void;
}

/**
 * What a CLI says about itself. Its `--version` is `version`, else the
 * "version" of `packageJson` (e.g. `new URL("../package.json", import.meta.url)`);
 * a CLI that also runs as one bundled file, away from its package.json,
 * passes `version`.
 */
export type ProgramInfo = {
  /** The executable's name, e.g. "netfleet": it starts every error line. */
  name: string;
  description: string;
  /** Default: process.stdout / process.stderr. */
  io?: ProgramIo;
} & ({ version: string } | { packageJson: URL });

const processIo: ProgramIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** The "version" field of a package.json. @throws Error when the file is missing or has no version. */
export function packageVersion(packageJson: URL): string {
  const version: unknown = (JSON.parse(readFileSync(packageJson, "utf8")) as { version?: unknown }).version;
  if (typeof version !== "string") throw new Error(`${packageJson.pathname} has no "version"`);
  return version;
}

/**
 * A commander program with the conventions both netfleet CLIs share. Set up
 * before any subcommand is added, because commander copies these settings
 * into each subcommand when it is created:
 * - `--version` / `-V` prints the package's version; `-h` / `--help` on every command;
 * - a usage error (unknown command or option, missing or extra argument) does
 *   not exit the process: it ends {@link runProgram} with {@link EXIT_USAGE},
 *   printed as `<name>: <message>` (no stack trace), with a "(Did you mean
 *   ...?)" line when a known name is close;
 * - extra positional arguments are errors.
 *
 * Help style, the same in every netfleet CLI: descriptions are capitalised
 * imperative sentences ("Print ...", "Keep ..."); a default is written in
 * the option's description as "(default X)", never given to commander as a
 * default value (which it would print as "(default: false)" or with quotes);
 * a required option says "(required)".
 */
export function createProgram(info: ProgramInfo): Command {
  const io = info.io ?? processIo;
  const state = { json: false };
  const program = new Command(info.name)
    .description(info.description)
    .version("version" in info ? info.version : packageVersion(info.packageJson), "-V, --version", "Print the version.")
    .helpOption("-h, --help", "Print the help of this command.")
    .helpCommand("help [command]", "Print the help of a command.")
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.out(text),
      writeErr: (text) => io.err(text),
      // commander's own messages start "error: "; ours (usageError) already name the command.
      outputError: (text, write) => {
        const line = text.startsWith("error: ") ? `${info.name}: ${text.slice("error: ".length)}` : text;
        write(state.json ? jsonErrorLine(line) : line);
      },
    });
  programState.set(program, state);
  return program;
}

/** Per program made by createProgram: whether the running command line asked for --json (runProgram sets it). */
const programState = new WeakMap<Command, { json: boolean }>();

/** Whether `argv` asks for JSON output: a `--json` before any `--`. */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

/**
 * An error or warning line as the JSON line every netfleet CLI writes to stderr under --json:
 * `{"error":"netfleet status: ..."}` (`{"warning":...}` for a line that says ": warning: "), one line, newline-terminated.
 * stdout keeps only the command's own JSON, so a consumer can parse both streams.
 */
export function jsonErrorLine(text: string): string {
  const line = text.replace(/\n+$/, "");
  return `${safeJsonLine(/^[^:]*: warning: /.test(line) ? { warning: line } : { error: line })}\n`;
}

/**
 * An option-value parser for commander (`.argParser(optionValue(parseX))`)
 * from one that throws a plain Error: commander reports that Error's message
 * as a usage error (exit {@link EXIT_USAGE}) instead of a crash.
 */
export function optionValue<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

/** Exit codes set by {@link withExitCode} handlers, per root program. */
const exitCodes = new WeakMap<Command, number>();

function rootOf(cmd: Command): Command {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root;
}

/**
 * Wraps a command handler that returns a process exit code so that
 * {@link runProgram} returns it. commander calls a handler with the
 * command's arguments, then its options, then the command itself.
 */
export function withExitCode<A extends unknown[]>(handler: (...args: A) => number | Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const code = await handler(...args);
    exitCodes.set(rootOf(args[args.length - 1] as Command), code);
  };
}

/**
 * Ends the command with a usage error (exit {@link EXIT_USAGE}): prints
 * `<command path>: <message>`, e.g. "netfleet rollout: --check and --resume do
 * not go together". For checks commander cannot make itself (options that
 * exclude each other, a value needing another option).
 */
export function usageError(cmd: Command, message: string): never {
  cmd.error(`${commandPath(cmd)}: ${message}`, { exitCode: EXIT_USAGE, code: "netfleet.usage" });
}

/** The command path ("netfleet rollout") that was running when an error was thrown, for {@link runMain}'s line. */
const thrownBy = new WeakMap<object, string>();

function commandPath(cmd: Command): string {
  const path: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) path.unshift(c.name());
  return path.join(" ");
}

/** Whether `program` has a command called `name` (or aliased so). */
function hasCommand(program: Command, name: string): boolean {
  return program.commands.some((c) => c.name() === name || c.aliases().includes(name));
}

/**
 * Parses `argv` (the arguments after the executable's name) and runs the
 * chosen command. Returns the exit code: the handler's (see
 * {@link withExitCode}), 0 after --help/--version, {@link EXIT_USAGE} after a
 * usage error (already printed). No command at all prints the help on
 * stdout and gives {@link EXIT_USAGE} (so `prog $EMPTY` in a script fails);
 * `help NAME` of no command is the same error as `NAME` ("unknown command",
 * with a suggestion). Errors a handler throws propagate (see {@link runMain}).
 */
export async function runProgram(program: Command, argv: readonly string[]): Promise<number> {
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT_USAGE;
  }
  const words = argv[0] === "help" && argv.length === 2 && !argv[1]!.startsWith("-") && !hasCommand(program, argv[1]!) ? [argv[1]!] : argv;
  const state = programState.get(program);
  if (state) state.json = wantsJson(argv);
  let running = program;
  program.hook("preAction", (_root, action) => {
    running = action;
  });
  try {
    await program.parseAsync([...words], { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    if (typeof err === "object" && err !== null) thrownBy.set(err, commandPath(running));
    throw err;
  }
  return exitCodes.get(program) ?? 0;
}

/**
 * Errors that are bugs, printed with their stack: JavaScript's own, and Node's ERR_* (e.g. a failed assert);
 * a thrown non-Error too. Everything else (an Error of ours, a system error with an errno code) is an expected failure.
 */
export function isBug(err: unknown): boolean {
  if (!(err instanceof Error)) return true;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === "string" && code.startsWith("ERR_")) return true;
  return err instanceof TypeError || err instanceof ReferenceError || err instanceof RangeError || err instanceof SyntaxError || err instanceof EvalError || err instanceof URIError;
}

/**
 * The line(s) {@link runMain} prints for an error a command threw: an
 * expected failure (an Error of ours, or a system error with an errno code
 * such as ENOENT or ECONNREFUSED) is one line, `<command path>: <message>`;
 * a bug (see isBug), a thrown non-Error, or anything with NETFLEET_DEBUG=1
 * in the environment keeps its stack.
 */
export function errorText(name: string, err: unknown, env: NodeJS.ProcessEnv = process.env): string {
  const prefix = (typeof err === "object" && err !== null && thrownBy.get(err)) || name;
  if (!(err instanceof Error)) return `${prefix}: ${String(err)}`;
  return `${prefix}: ${env.NETFLEET_DEBUG === "1" || isBug(err) ? (err.stack ?? err.message) : err.message}`;
}

/**
 * Runs a CLI's `main` as this process (its src/cli.ts): the exit code is
 * main's (a failed one, exit code not 0, ends the process as soon as its output is flushed: no timer left
 * behind keeps it); a closed stdout (`netfleet plan ... | head`) ends it quietly with
 * 0; an error main throws is printed by {@link errorText} (one line, or
 * the stack of a bug) and gives 1.
 */
export async function runMain(name: string, main: (argv: string[]) => Promise<number>): Promise<void> {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  const argv = process.argv.slice(2);
  const code = await main(argv).catch((err: unknown) => {
    const text = errorText(name, err);
    process.stderr.write(wantsJson(argv) ? jsonErrorLine(text) : `${text}\n`);
    return 1;
  });
  process.exitCode = code;
  // A failed command is done: a timer a failed dial left behind (nats.js keeps its handshake timeout running
  // after a refused connection) must not hold the answer back. Exit once what was written has been flushed.
  if (code !== 0) process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}
