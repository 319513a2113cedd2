/**
 * Conventions shared by the netfleet CLIs (netfleet, netfleet-agent,
 * netfleet-lab), on commander: program setup, exit codes, shell completion.
 */
export { EXIT_USAGE, createProgram, optionValue, packageVersion, runMain, runProgram, usageError, withExitCode, type ProgramInfo, type ProgramIo } from "./program.ts";
export { addCompletionCommand, bashCompletion, zshCompletion } from "./completion.ts";
