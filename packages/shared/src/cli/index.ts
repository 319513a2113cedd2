/**
 * Conventions shared by the netfleet CLIs (netfleet, netfleet-agent,
 * netfleet-lab), on commander: program setup, exit codes, shell completion,
 * JSON output safe for a terminal.
 */
export { EXIT_USAGE, createProgram, errorText, isBug, jsonErrorLine, optionValue, packageVersion, runMain, runProgram, usageError, wantsJson, withExitCode, type ProgramInfo, type ProgramIo } from "./program.ts";
export { addCompletionCommand, bashCompletion, zshCompletion } from "./completion.ts";
export { safeJson, safeJsonLine } from "./json.ts";
