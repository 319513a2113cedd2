import { addCompletionCommand, createProgram, runProgram, type ProgramIo } from "@netfleet/shared/cli";
import { consoleOutput, type CommandOutput } from "./output.ts";
import { addControlCommands } from "./program/control.ts";
import { addGraphCommand } from "./program/graph.ts";
import { addKeysCommands } from "./program/keys.ts";
import { addRolloutCommand } from "./program/rollout.ts";
import { addSiteCommands } from "./program/site.ts";
import { addShowCommand } from "./program/show.ts";

const NOTES = `
Control plane (NATS JetStream): serve, token, hosts, status, audit, rollout and keys take --state-dir DIR,
default $NETFLEET_STATE_DIR or /var/lib/netfleet: one site's secrets, agent credentials, and the
nats-server data of serve.

Servers: commands connect to --nats URL[,URL...], else the servers serve recorded in the state
dir, else the inventory's site.nats.

--json: the command's JSON on stdout (rollout: JSON lines); errors and warnings as JSON lines on
stderr ({"error": "..."}).

Shell completion: source <(netfleet completion bash), or zsh.

Exit codes: 0 ok, 1 runtime error, 2 invalid input (nothing was changed), 64 usage error.
rollout also: 3 partial (some hosts failed), 4 refused (another rollout holds the lock).
status (a monitoring check): 0 every inventory host converged, 1 drift or failure, 2 a host unreachable,
3 the status could not be read (no controller state, NATS not reachable).`;

/**
 * The `netfleet` command line: parses `argv` (the arguments after the
 * executable's name), runs the command and returns its exit code (see NOTES;
 * rollout has its own). No command: the help on stdout, exit 64 (runProgram). With `out`, everything the command and commander
 * print goes there (tests); else to stdout/stderr, JSON with --json.
 */
export async function main(argv: string[], out?: CommandOutput): Promise<number> {
  const io: ProgramIo | undefined = out && {
    out: (text) => out.line(text.replace(/\n$/, "")),
    err: (text) => out.error(text.replace(/\n$/, "")),
  };
  const program = createProgram({
    name: "netfleet",
    description: "Fleet manager for the virtual networks of KVM/libvirt clusters on Open vSwitch.",
    packageJson: new URL("../package.json", import.meta.url),
    ...(io ? { io } : {}),
  });
  const ctx = { output: (json: boolean) => out ?? consoleOutput(json) };
  addSiteCommands(program, ctx);
  addControlCommands(program, ctx);
  addRolloutCommand(program, ctx);
  addKeysCommands(program, ctx);
  addShowCommand(program, ctx);
  addGraphCommand(program, ctx);
  addCompletionCommand(program);
  program.addHelpText("after", NOTES);
  return runProgram(program, argv);
}
