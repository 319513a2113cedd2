import { hostname } from "node:os";
import { Option, type Command } from "commander";
import { DNS_LABEL, parseJoinToken, parseNatsUrls, type HostAssignment } from "@netfleet/shared";
import { addCompletionCommand, createProgram, jsonErrorLine, optionValue, runProgram, usageError, withExitCode } from "@netfleet/shared/cli";
import { AssignmentFileError, applyOnce, readAssignment, runFromFile } from "./file-mode.ts";
import { runFleetAgent } from "./fleet-mode.ts";
import { TOKEN_ON_ARGV, readToken, runArgs, tokenFileWarning, type AgentConfig } from "./config.ts";
import { observabilitySettings, withObservabilityOptions, type ObservabilityFlags } from "./metrics-options.ts";
import { Toolbox } from "./tools.ts";
import { AGENT_VERSION } from "./version.ts";

/** The options every command that touches the host takes (defaults suit a normal host). */
interface ToolFlags {
  ovsDb?: string;
  ovsRundir?: string;
  libvirtUri?: string;
  runDir?: string;
  stateDir?: string;
}

interface ApplyFlags extends ToolFlags {
  assignment: string;
  name?: string;
  anyHost?: boolean;
  check?: boolean;
  json?: boolean;
}

interface RunFlags extends ToolFlags, ObservabilityFlags {
  assignment?: string;
  name?: string;
  anyHost: boolean;
  interval: number;
  flowInterval: number;
  site?: string;
  nats?: string[];
  token?: string;
  tokenFile?: string;
  confirmDeadline: number;
  heartbeat: number;
  watch: boolean;
}

const EXIT_CODES = `
Exit codes: 0 converged (check mode: nothing to change), 1 runtime error, 2 check mode: changes pending,
3 some resource failed, 4 invalid assignment or another host's (nothing changed), 64 usage error.`;

const HOST_CHECK = `
FILE must be this host's assignment: its "host" must be --name (default the
hostname), else nothing is changed and the exit code is 4. --any-host applies
another host's document on purpose (labs).`;

const FLEET_HELP = `
Without --assignment, the fleet agent (--site, --nats and --token-file required):
enrolls with the controller (netfleet serve) using the join token read from
--token-file FILE (mode 0600), or from stdin with --token-file - (never from
the command line: every local user sees that in ps); a wrong token quarantines
the host until netfleet hosts approve. It watches its own signed assignment, applies it, reports results
and heartbeats, repairs drift every --interval and on OVS/libvirt events
(reported as corrective), undoes an apply when NATS cannot be reached within
--confirm-deadline after it. Keeps the host as it is while NATS is gone;
reconnects with backoff and jitter and resyncs. --state-dir holds its key,
credentials and checkpoint (default /var/lib/netfleet-agent).

With --assignment FILE: keeps the host converged to FILE: follows OVS port
changes and libvirt domain events, re-reads FILE when it changes, logs JSON
lines; stopping it (SIGTERM) leaves the host as it is.
${HOST_CHECK}`;

const SHOW_HELP = `
Runs only commands that read (ip -s -details -json link, ip -json addr, ovs-vsctl list,
ovs-ofctl dump-flows, virsh net-list/net-dumpxml, nft list table inet netfleet) and
reads the lease files (<state-dir>/dnsmasq/*.leases, <run-dir>/leases/*.json). A tool
that cannot be read (no libvirtd on a backend, no OVS) is named under "Not read" (JSON:
problems), and the rest is still shown. The same view comes from the controller with
netfleet show HOST. Exit codes: 0 shown, 1 runtime error, 64 usage error.`;

/**
 * run's periods in milliseconds when not given. Applied after parsing, not
 * as commander defaults: its help would show them in milliseconds next to
 * options that take seconds.
 */
const RUN_DEFAULTS = { interval: 30_000, flowInterval: 2000, confirmDeadline: 20_000, heartbeat: 15_000, anyHost: false, watch: true };

/** Seconds (a number >= `min`) as milliseconds, for an option parser. */
function seconds(flag: string, min: number): (text: string) => number {
  return optionValue((text) => {
    const n = Number(text);
    if (!(n >= min)) throw new Error(`--${flag} must be a number >= ${min} (seconds)`);
    return n * 1000;
  });
}

function withToolOptions(cmd: Command): Command {
  return cmd
    .option("--ovs-db <path>", "ovsdb socket (default /run/openvswitch/db.sock)")
    .option("--ovs-rundir <dir>", "OVS run dir holding <bridge>.mgmt sockets")
    .option("--libvirt-uri <uri>", "libvirt connection (default qemu:///system)")
    .option("--run-dir <dir>", "the agent's own files: dnsmasq configs, pids, logs (default /run/netfleet)")
    .option("--state-dir <dir>", "what survives a reboot: dnsmasq leases, and the fleet agent's key, credentials and checkpoint (fleet agent: default /var/lib/netfleet-agent; else <run-dir>/state when --run-dir is given)");
}

function toolbox(v: ToolFlags): Toolbox {
  return new Toolbox({
    ...(v.ovsDb ? { ovsDb: v.ovsDb } : {}),
    ...(v.ovsRundir ? { ovsRundir: v.ovsRundir } : {}),
    ...(v.libvirtUri ? { libvirtUri: v.libvirtUri } : {}),
    ...(v.runDir ? { runDir: v.runDir } : {}),
    ...(v.stateDir ? { stateDir: v.stateDir } : {}),
  });
}

/**
 * The `netfleet-agent` command line (`argv`: the arguments after the
 * executable's name). Resolves with the exit code: see EXIT_CODES; usage
 * errors (unknown command or option, a bad value) print
 * `netfleet-agent: ...` and give 64; `--help` and `--version` give 0.
 */
export async function main(argv: string[], given: { token?: string } = {}): Promise<number> {
  const program = createProgram({ name: "netfleet-agent", description: "Reconcile this host to its netfleet assignment.", version: AGENT_VERSION });
  program.addHelpText("after", EXIT_CODES);

  withToolOptions(
    program
      .command("apply")
      .description("Converge this host to an assignment file once, and print what it did.")
      .requiredOption("--assignment <file>", "this host's assignment (netfleet compile writes them) (required)")
      .option("--name <name>", "this host's name in the inventory (default the hostname)")
      .option("--any-host", "apply another host's assignment on purpose (labs)")
      .option("--check", "only say what would change (unified diffs of texts, old -> new of other fields); run nothing that changes the host; exit 2 when something would change")
      .option("--json", "print the results as JSON"),
  )
    .addHelpText("after", `${HOST_CHECK}\n${EXIT_CODES}`)
    .action(
      withExitCode(async (v: ApplyFlags, cmd: Command) => {
        const assignment = fileAssignment(cmd, v);
        return typeof assignment === "number" ? assignment : applyOnce(assignment, toolbox(v), { check: v.check === true, json: v.json === true });
      }),
    );

  withToolOptions(
    withObservabilityOptions(
      program
        .command("run")
        .description("Keep this host converged: as a fleet member (--site --nats --token-file), or to an assignment file.")
        .option("--assignment <file>", "keep the host at this file instead of joining the fleet")
        .option("--name <name>", "the name to enroll as / this host's name in the inventory (default a host token's host, else the hostname)")
        .option("--any-host", "with --assignment: apply another host's assignment on purpose (labs)")
        .option("--site <name>", "the site to join (a DNS label)")
        .option("--nats <urls>", "the controller's NATS servers: nats://host:port[,nats://host:port...]", optionValue(parseNatsUrls))
        .option("--token-file <file>", "the token: a file (mode 0600), or - to read it from stdin; a host token (netfleet hosts token NAME) enrolls this host as NAME at once, the site's join token (netfleet token) only asks to join")
        // Refused with a usage error: a token on the command line is in ps for every local user.
        .addOption(new Option("--token <token>").hideHelp())
        .option("--interval <s>", `full reconcile (drift repair) period, seconds (default ${RUN_DEFAULTS.interval / 1000})`, seconds("interval", 1))
        .option("--flow-interval <s>", `VM port rules check period, seconds (default ${RUN_DEFAULTS.flowInterval / 1000})`, seconds("flow-interval", 0.2))
        .option("--confirm-deadline <s>", `after an apply, NATS must answer within this many seconds or the apply is undone (default ${RUN_DEFAULTS.confirmDeadline / 1000})`, seconds("confirm-deadline", 1))
        .option("--heartbeat <s>", `heartbeat period, seconds (default ${RUN_DEFAULTS.heartbeat / 1000})`, seconds("heartbeat", 0.2))
        .option("--no-watch", "do not follow OVS and libvirt events (fleet agent)"),
    ),
  )
    .addHelpText("after", `${FLEET_HELP}\n${EXIT_CODES}`)
    .action(withExitCode((v: Partial<RunFlags>, cmd: Command) => run({ ...RUN_DEFAULTS, ...v }, cmd, given.token)));

  withToolOptions(
    program
      .command("show")
      .description("Print what this host has now, read only: bonds, VLANs, OVS bridges and ports, VM ports and their rules, libvirt networks, leases, nft sets, counters.")
      .option("--name <name>", "the host name the view carries (default the hostname)")
      .option("--json", "print the view as JSON (what netfleet show HOST --json carries as view)"),
  )
    .addHelpText("after", SHOW_HELP)
    .action(
      withExitCode(async (v: ToolFlags & { name?: string; json?: boolean }, cmd: Command) => {
        if (v.name !== undefined && !DNS_LABEL.test(v.name)) usageError(cmd, "--name must be a DNS label");
        const { showCommand } = await import("./show/command.ts");
        return showCommand(toolbox(v), { json: v.json === true, ...(v.name !== undefined ? { name: v.name } : {}) });
      }),
    );

  addCompletionCommand(program);
  return runProgram(program, argv);
}

/** The assignment of `--assignment`, checked to be this host's; else the exit code (4: unusable file or another host's, 64: a bad --name). */
function fileAssignment(cmd: Command, v: { assignment: string; name?: string; anyHost?: boolean | undefined; json?: boolean | undefined }): HostAssignment | number {
  // With --json the refusal is a JSON line on stderr (`{"error": ...}`), as usage errors are.
  const say = (t: string) => process.stderr.write(v.json ? jsonErrorLine(`netfleet-agent: ${t}`) : `netfleet-agent: ${t}\n`);
  let assignment: HostAssignment;
  try {
    assignment = readAssignment(v.assignment);
  } catch (err) {
    if (!(err instanceof AssignmentFileError)) throw err;
    say(err.message);
    return 4;
  }
  const refused = wrongHost(v.assignment, assignment.host, v.name, v.anyHost);
  if (refused === undefined) return assignment;
  if (refused.startsWith("--name")) usageError(cmd, refused);
  say(refused);
  return 4;
}

/**
 * `netfleet-agent run` with the settings of an agent config (agent.json:
 * what `config-run FILE` of the bundle runs): the same as the command line
 * `run --site --nats --token-file [--name] [--state-dir] [--run-dir]`, with the
 * token handed over in memory, so it appears on no command line. Resolves
 * with the exit code, as main().
 */
export function runConfig(c: AgentConfig): Promise<number> {
  return main(runArgs(c), { token: c.token });
}

async function run(v: RunFlags, cmd: Command, givenToken: string | undefined): Promise<number> {
  if (v.assignment !== undefined) {
    const file = v.assignment;
    const assignment = fileAssignment(cmd, { assignment: file, anyHost: v.anyHost, ...(v.name !== undefined ? { name: v.name } : {}) });
    if (typeof assignment === "number") return assignment;
    const hostCheck = (next: HostAssignment) => wrongHost(file, next.host, v.name, v.anyHost);
    return runFromFile(file, assignment, toolbox(v), { intervalMs: v.interval, flowIntervalMs: v.flowInterval, ...(v.logLevel ? { logLevel: v.logLevel } : {}) }, hostCheck);
  }
  if (v.token !== undefined) usageError(cmd, TOKEN_ON_ARGV);
  if (v.nats === undefined) usageError(cmd, "--assignment FILE, or --site, --nats and --token-file for the fleet agent, is required");
  if (!v.site || !DNS_LABEL.test(v.site)) usageError(cmd, "--site NAME is required (a DNS label)");
  let token = givenToken;
  if (v.tokenFile !== undefined) {
    try {
      token = await readToken(v.tokenFile);
    } catch (err) {
      usageError(cmd, `--token-file ${v.tokenFile}: ${(err as Error).message}`);
    }
    const warning = await tokenFileWarning(v.tokenFile);
    if (warning) process.stderr.write(`netfleet-agent run: ${warning}\n`);
  }
  if (!token) usageError(cmd, "--token-file FILE (or - for stdin) is required (netfleet token prints the site's join token)");
  let join;
  try {
    join = parseJoinToken(token);
  } catch (err) {
    usageError(cmd, (err as Error).message);
  }
  if (v.name !== undefined && !DNS_LABEL.test(v.name)) usageError(cmd, "--name must be a DNS label");
  // A host token enrolls one host, under its name: that is the name, and another --name could never enroll.
  if (join.host !== undefined && v.name !== undefined && v.name !== join.host) usageError(cmd, `the token is a host token for ${join.host}, not for --name ${v.name}`);
  const name = v.name ?? join.host;
  const stateDir = v.stateDir ?? "/var/lib/netfleet-agent";
  return runFleetAgent({
    site: v.site,
    servers: v.nats,
    enrollment: { password: join.enrollPassword, token: join.token },
    ...(name ? { name } : {}),
    stateDir,
    tools: toolbox({ ...v, stateDir }),
    intervalMs: v.interval,
    flowIntervalMs: v.flowInterval,
    confirmDeadlineMs: v.confirmDeadline,
    heartbeatMs: v.heartbeat,
    watchEvents: v.watch,
    ...observabilitySettings(v),
  });
}

/**
 * File mode's host check: an assignment names its host, and only that host
 * applies it (applying a VM host's document on the backend would remove its
 * gateway ports, dnsmasq and nft table). `name` defaults to os.hostname();
 * `anyHost` (--any-host) lets a lab apply another host's document on purpose.
 * Returns the one-line refusal, or undefined when the document may apply.
 */
export function wrongHost(file: string, docHost: string, name: string | undefined, anyHost: boolean | undefined): string | undefined {
  if (anyHost) return undefined;
  if (name !== undefined && !DNS_LABEL.test(name)) return "--name must be a DNS label (this host's name in the inventory)";
  const me = name ?? hostname().split(".")[0]!;
  if (docHost === me) return undefined;
  return `${JSON.stringify(file)} is the assignment of host ${docHost}, and this host is ${me} (${name !== undefined ? "--name" : "its hostname"}); refused, nothing changed (--name ${docHost} if this is ${docHost}; --any-host applies another host's assignment on purpose)`;
}
