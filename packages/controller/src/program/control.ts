import { CommanderError, Help, Option, type Command } from "commander";
import type { Inventory } from "@netfleet/shared";
import { EXIT_USAGE, isBug, usageError, withExitCode } from "@netfleet/shared/cli";
import { boundOldGeneration } from "@netfleet/shared/cli/launch";
import type { Connected } from "../commands/connect.ts";
import type { CommandOutput } from "../output.ts";
import { serveObservability, withServeObservabilityOptions, type ServeObservabilityFlags } from "../metrics-options.ts";
import { checked, jsonOption, limitOption, natsOption, seconds, stateDirOption, type Context } from "./options.ts";

/** Options of the commands that use the controller's state (--nats still text). */
/** The connection options of the control-plane commands. */
export interface ControllerFlags {
  stateDir?: string;
  nats?: string;
  json?: boolean;
}

/** How long a command waits for NATS (dial, then the site's buckets) before it says that no server answers. */
const CONNECT_TIMEOUT_MS = 15_000;

/**
 * Connects to the controller's NATS (--nats, else the servers serve
 * recorded, else the site's), runs `use` and closes the connection. A bad
 * --nats is a usage error of `cmd`.
 */
export async function withController(cmd: Command, o: ControllerFlags, inventory: Inventory | undefined, use: (c: Connected) => Promise<number>): Promise<number> {
  const { connectController, parseServers, stateDirOf } = await import("../commands/connect.ts");
  const servers = o.nats === undefined ? undefined : checked(cmd, () => parseServers(o.nats!));
  const connected = await connectController({ stateDir: stateDirOf(o.stateDir), deadlineMs: CONNECT_TIMEOUT_MS, ...(inventory ? { inventory } : {}), ...(servers ? { servers } : {}) });
  try {
    return await use(connected);
  } finally {
    await connected.cp.close();
  }
}

/**
 * Loads the optional site folder of token/hosts/status/audit. Returns the
 * exit code (EXIT_INVALID) instead when it is invalid, its problems printed.
 */
async function optionalSite(dir: string | undefined, out: CommandOutput): Promise<Inventory | undefined | number> {
  if (dir === undefined) return undefined;
  const { EXIT_INVALID, loadOrReport } = await import("../commands/validate.ts");
  return loadOrReport(dir, out) ?? EXIT_INVALID;
}

/**
 * Makes `cmd` (hosts, status) a listing of the controller's view: an
 * optional site folder, --state-dir, --nats, --json, and `show` run on a
 * connected control plane.
 */
function listing(cmd: Command, ctx: Context, show: (cp: Connected["cp"], out: CommandOutput) => Promise<number>): void {
  cmd
    .argument("[site-dir]", "the site folder")
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: ControllerFlags, c: Command) => {
      const out = ctx.output(o.json ?? false);
      const inventory = await optionalSite(dir, out);
      if (typeof inventory === "number") return inventory;
      return withController(c, o, inventory, ({ cp }) => show(cp, out));
    }));
}

/** The control-plane commands: serve, token, hosts (token, approve, reject, revoke, rekey), status, audit. */
export function addControlCommands(program: Command, ctx: Context): void {
  withServeObservabilityOptions(
    program
      .command("serve")
      .summary("Run the controller service until SIGTERM.")
      .description(
        "The controller service, runs until SIGTERM: starts nats-server (JetStream; default listen = the site's first nats URL; " +
          "--nodes 3: a cluster on PORT, PORT+1, PORT+2) unless --nats names servers someone else runs, answers agent enrollments " +
          "(a host token from hosts token: approved with its own NATS user; the site join token: a pending claim for an operator), records heartbeats, serves hosts approve|reject|revoke|rekey. " +
          'Prints a JSON "ready" line.',
      )
      .argument("<site-dir>", "the site folder")
      .option("--listen <addr:port>", "where its nats-server listens (default the site's first nats URL)")
      // The choices are for help and completion; the handler checks the value, with its own message.
      .addOption(new Option("--nodes <n>", "1, or 3 for a JetStream cluster (default 1)").choices(["1", "3"]).argParser((text) => text))
      .addOption(natsOption("NATS servers someone else runs (then serve starts none)"))
      .option("--ui <addr:port>", "serve the read-only web dashboard there: PORT (on 127.0.0.1) or ADDRESS:PORT, loopback only unless --ui-allow-remote (default: no dashboard)")
      .option("--ui-allow-remote", "let --ui listen on a non-loopback address and answer any Host name (it has no login: put an authenticating proxy in front)")
      .addOption(stateDirOption()),
  )
    .action(withExitCode(async (dir: string, o: ControllerFlags & ServeObservabilityFlags & { listen?: string; nodes?: string; ui?: string; uiAllowRemote?: boolean }, cmd: Command) => {
      // A daemon: the old generation collected at 1.3 times what was live (launch.mjs).
      boundOldGeneration();
      const [{ parseListen, serveCommand }, { parseServers, stateDirOf }, { EXIT_INVALID, loadOrReport }, { parseUiListen }] = await Promise.all([
        import("../commands/serve.ts"),
        import("../commands/connect.ts"),
        import("../commands/validate.ts"),
        import("../ui/listen.ts"),
      ]);
      const listen = o.listen === undefined ? undefined : checked(cmd, () => parseListen(o.listen!));
      if (o.uiAllowRemote && o.ui === undefined) usageError(cmd, "--ui-allow-remote needs --ui ADDRESS:PORT");
      const ui = o.ui === undefined ? undefined : { listen: checked(cmd, () => parseUiListen(o.ui!, o.uiAllowRemote ?? false)), allowRemote: o.uiAllowRemote ?? false };
      const external = o.nats === undefined ? undefined : checked(cmd, () => parseServers(o.nats!));
      const nodes = o.nodes ?? "1";
      if (nodes !== "1" && nodes !== "3") usageError(cmd, "--nodes is 1 or 3");
      const out = ctx.output(false);
      const inventory = loadOrReport(dir, out);
      if (!inventory) return EXIT_INVALID;
      return serveCommand(inventory, { stateDir: stateDirOf(o.stateDir), nodes: nodes === "3" ? 3 : 1, ...(listen ? { listen } : {}), ...(external ? { external } : {}), ...(ui ? { ui } : {}), ...serveObservability(o) }, out);
    }));

  program
    .command("token")
    .summary("Print the site's join token: hosts enrolling with it wait for an operator's approve.")
    .description(
      "Print the site's join token (creates the state dir's secrets when given the site). A host enrolling with it is only a pending " +
        "claim until netfleet hosts approve; netfleet hosts token NAME mints a token that enrolls one host at once.",
    )
    .argument("[site-dir]", "the site folder")
    .addOption(stateDirOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: ControllerFlags) => {
      const out = ctx.output(o.json ?? false);
      const inventory = await optionalSite(dir, out);
      if (typeof inventory === "number") return inventory;
      const [{ ControllerHome }, { stateDirOf }] = await Promise.all([import("../store/home.ts"), import("../commands/connect.ts")]);
      const secrets = await new ControllerHome(stateDirOf(o.stateDir)).secrets(inventory?.site.name);
      if (out.json) out.emit({ site: secrets.site, token: secrets.enrollment.token });
      else out.line(secrets.enrollment.token);
      return 0;
    }));

  const hosts = program
    .command("hosts")
    .summary("List enrolled and inventory hosts: state, match, last seen; mint a host token; approve, reject, revoke or rekey one.")
    .usage("[options] [site-dir]\n       netfleet hosts token [options] <name>\n       netfleet hosts approve|reject|revoke|rekey [options] <name>")
    .description(
      "List enrolled and inventory hosts: state, match, last seen. hosts token NAME: mint a single-use enrollment token for one " +
        "inventory host (no serve needed). hosts approve|reject|revoke|rekey NAME: approve a pending claim / refuse a host / " +
        "revoke its NATS credentials and disconnect it / hand its connected agent new credentials (needs serve running).",
    );
  listing(hosts, ctx, async (cp, out) => (await import("../commands/hosts.ts")).hostsCommand(cp, out));
  // The parent's options apply to the subcommands too, but for the program's --version, which means nothing after a subcommand.
  const parentHelp = {
    showGlobalOptions: true,
    visibleGlobalOptions(this: Help, c: Command) {
      return Help.prototype.visibleGlobalOptions.call(this, c).filter((opt) => opt.long !== "--version");
    },
  };
  hosts
    .command("token")
    .description(
      "Mint a host token for one inventory host and print it: it enrolls that host once, under that name, approved at once, " +
        "until it expires (--ttl, default 24h, at most 30d). Works from the state dir alone; keep it like a password " +
        "(netfleet hosts token hv1 --out hv1.token, written 0600; netfleet-agent run --token-file hv1.token).",
    )
    .argument("<name>", "the inventory host's name")
    .argument("[site-dir]", "the site folder, to check the host is in its inventory (default the one serve recorded)")
    .option("--ttl <duration>", "how long it is accepted: 90s, 15m, 24h, 7d (default 24h, at most 30d)")
    .option("--out <file>", "write it to FILE (created 0600; an existing file is not overwritten) instead of stdout")
    .configureHelp(parentHelp)
    .action(withExitCode(async (name: string, dir: string | undefined, _o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<ControllerFlags & { ttl?: string; out?: string }>();
      const out = ctx.output(o.json ?? false);
      const [{ hostsTokenCommand, parseTtl }, { stateDirOf }] = await Promise.all([import("../commands/hosts.ts"), import("../commands/connect.ts")]);
      const ttlMs = o.ttl === undefined ? 24 * 3600 * 1000 : checked(cmd, () => parseTtl(o.ttl!));
      const inventory = await optionalSite(dir, out);
      if (typeof inventory === "number") return inventory;
      return hostsTokenCommand({ stateDir: stateDirOf(o.stateDir), host: name, ttlMs, ...(inventory ? { inventory } : {}), ...(o.out !== undefined ? { outFile: o.out } : {}) }, out);
    }));
  const actions = [
    ["approve", "Approve a host's pending claim (quarantined)"],
    ["reject", "Refuse a host: its credentials revoked, its claim dropped"],
    ["revoke", "Revoke an approved host's NATS credentials: its agent is disconnected at once and cannot reconnect"],
    ["rekey", "Give an approved, connected host new NATS credentials (sealed to its agent's key); the old password stops working"],
  ] as const;
  for (const [action, what] of actions) {
    const sub = hosts
      .command(action)
      .description(`${what} (needs serve running).`)
      .argument("<name>", "the host's name")
      .configureHelp(parentHelp);
    if (action === "approve") sub.option("--replace-key <fingerprint>", "hand an approved host to the pending claim's agent key (its fingerprint, as netfleet hosts shows it)");
    sub.action(withExitCode(async (name: string, _o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<ControllerFlags & { replaceKey?: string }>();
      const out = ctx.output(o.json ?? false);
      if (o.replaceKey !== undefined && !/^[0-9a-f]{16}$/.test(o.replaceKey)) usageError(cmd, "--replace-key takes a key fingerprint: 16 hex digits, as netfleet hosts shows it");
      const { hostsActionCommand } = await import("../commands/hosts.ts");
      return withController(cmd, o, undefined, ({ cp }) => hostsActionCommand(cp, action, name, out, o.replaceKey ? { replaceKey: o.replaceKey } : {}));
    }));
  }

  program
    .command("status")
    .summary("Show per host: enrolled, last seen, desired vs applied revision, drift; the exit code says converged (0), drift (1), unreachable (2).")
    .description(
      "Per host: enrolled, last seen, desired vs applied revision, drift, drift the agent repaired (count, last; --json: the last 20 " +
        "with before/after), warnings (foreign-drop: ...), and a last line with each host's health. For monitoring, the exit code: " +
        "0 every inventory host converged; 1 drift or failure (a host not at its desired revision, rolled back, with failed resources, " +
        "nothing rolled out yet, or waiting for approval); 2 a host unreachable (never enrolled, or not heard from for --unreachable-after), " +
        "which wins over 1; 3 the status could not be read (no controller state, NATS not reachable, an invalid site folder); 64 a usage error. " +
        "Enrolled hosts the inventory does not list are shown but do not count. Reads only: nothing is written.",
    )
    .argument("[site-dir]", "the site folder")
    .addOption(limitOption())
    .option("--unreachable-after <s>", "a host not heard from for this long is unreachable, seconds (default 90; heartbeats come every 15 s and are recorded every 30 s)", seconds("--unreachable-after"))
    .option("--counters", "ask every approved host's agent for its port and bond counters, however many (10 s each, 8 at once, 30 s in all); by default they are asked only when at most 64 approved hosts are selected")
    .option("--no-counters", "do not ask the agents for their counters")
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string | undefined, o: ControllerFlags & { limit?: string[]; unreachableAfter?: number; counters?: boolean }, cmd: Command) => {
      const out = ctx.output(o.json ?? false);
      const [{ statusCommand }, { STATUS_EXIT }, { LimitError }] = await Promise.all([import("../commands/hosts.ts"), import("../store/status.ts"), import("../select/limit.ts")]);
      const inventory = await optionalSite(dir, out);
      if (typeof inventory === "number") return STATUS_EXIT.unknown;
      try {
        return await withController(cmd, o, inventory, ({ cp }) =>
          statusCommand(cp, out, { ...(o.limit ? { limit: o.limit } : {}), ...(o.unreachableAfter ? { unreachableAfterMs: o.unreachableAfter } : {}), ...(o.counters !== undefined ? { counters: o.counters } : {}) }),
        );
      } catch (err) {
        // A usage error (a bad --nats) stays one (64); a bug keeps its stack.
        if (isBug(err) || err instanceof CommanderError) throw err;
        out.error(`netfleet status: ${(err as Error).message}`);
        return err instanceof LimitError ? EXIT_USAGE : STATUS_EXIT.unknown;
      }
    }));

  program
    .command("audit")
    .summary("Show what a VM reached through the backend's gateway and what the gateway refused.")
    .description(
      "What VM reached through the backend's gateway and what the gateway refused (its audit log: new outbound connections and drops, " +
        "kept 30 days), oldest first. VM: an inventory VM name; its address is its static ip, extra addresses or current DHCP lease.",
    )
    .argument("<vm>", "the VM's inventory name")
    .argument("[site-dir]", "the site folder (default the one serve recorded)")
    .option("--since <when>", "a duration back (90s, 15m, 1h, 7d) or an ISO date-time (default 24h)")
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .action(withExitCode(async (vm: string, dir: string | undefined, o: ControllerFlags & { since?: string }, cmd: Command) => {
      const { auditCommand, AUDIT_DEFAULT_SINCE_MS, parseSince } = await import("../commands/audit.ts");
      const since = o.since === undefined ? new Date(Date.now() - AUDIT_DEFAULT_SINCE_MS) : checked(cmd, () => parseSince(o.since!));
      const out = ctx.output(o.json ?? false);
      const inventory = await optionalSite(dir, out);
      if (typeof inventory === "number") return inventory;
      return withController(cmd, o, inventory, (c) => {
        if (!c.inventory) usageError(cmd, "no inventory: give the site folder (netfleet audit VM <site-dir>)");
        return auditCommand(c.cp, c.inventory, vm, since, out);
      });
    }));
}
