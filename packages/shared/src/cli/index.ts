/**
 * Conventions shared by the netfleet CLIs (netfleet, netfleet-agent,
 * netfleet-lab), on commander: program setup, exit codes, shell completion,
 * JSON output safe for a terminal.
 */
export { EXIT_USAGE, createProgram, errorText, optionValue, packageVersion, runMain, runProgram, usageError, withExitCode, type ProgramInfo, type ProgramIo } from "./program.ts";
export { addCompletionCommand, bashCompletion, zshCompletion } from "./completion.ts";
export { safeJson } from "./json.ts";
