import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { inventoryJsonSchema } from "@netfleet/shared";
import { compileCommand, planCommand } from "./commands/plan.ts";
import { labCommand, labOptions } from "./commands/lab.ts";
import { validateCommand, loadOrReport, EXIT_INVALID } from "./commands/validate.ts";
import { bootstrapCommand, bootstrapOptions } from "./commands/bootstrap.ts";
import { connectController, parseServers, stateDirOf, withTimeout } from "./commands/connect.ts";
import { hostsActionCommand, hostsCommand, statusCommand } from "./commands/hosts.ts";
import { AUDIT_DEFAULT_SINCE_MS, auditCommand, parseSince } from "./commands/audit.ts";
import { ROLLOUT_EXIT, rolloutCommand } from "./commands/rollout.ts";
import { parseListen, serveCommand } from "./commands/serve.ts";
import { ControllerHome } from "./store/home.ts";
import { parseAmount } from "./rollout/rollout.ts";
import { consoleOutput, type CommandOutput } from "./output.ts";

export const EXIT_USAGE = 64;

const HELP = `netfleet — fleet manager for the virtual networks of KVM/libvirt clusters on Open vSwitch

Usage: netfleet <command> [options]

Commands:
  validate <site-dir>                 check an inventory; one line per problem (file:line:col: path: message)
  plan <site-dir> [--host NAME]       per host: the resources it must hold and the commands of a first apply
  compile <site-dir> --out DIR         write each host's assignment to DIR/<host>.json (for netfleet-agent apply)
  lab up|down|status|check|attack     the local lab: hosts and VMs as namespaces, real OVS, libvirtd,
                                      dnsmasq, nftables; check prints the connectivity matrix, attack
                                      sends crafted frames from VM namespaces (scapy) and looks for
                                      them at their targets, each beside a positive control
      [--prefix P] [--run-dir DIR]    name and place of the lab (default nf, /run/netfleet-lab/nf)
      [--inventory DIR]               the site it builds (default inventories/lab)
  bootstrap <site-dir> --token T [--nats URLS] [--limit PAT,...] [--accept-new] [--identity F]
            [--known-hosts F] [--user U] [--port N] [--concurrency N] | --image-root DIR
                                      install the agent over SSH (host keys checked against known_hosts;
                                      --accept-new records new ones, a changed one is refused), write its
                                      config and systemd unit, start it; or write the same files into a
                                      host image (--image-root) so the host enrolls on first boot
  schema [--out FILE]                 print (or write) the JSON Schema of inventory files, for editors
  help                                this text

Control plane (NATS JetStream; every command below takes --state-dir DIR, default
$NETFLEET_STATE_DIR or /var/lib/netfleet: one site's secrets, agent credentials,
and the nats-server data of serve):
  serve <site-dir> [--listen ADDR:PORT] [--nodes 1|3] [--nats URLS]
                                      the controller service, runs until SIGTERM: starts nats-server
                                      (JetStream; default listen = the site's first nats URL; --nodes 3:
                                      a cluster on PORT, PORT+1, PORT+2) unless --nats names servers
                                      someone else runs, answers agent enrollments (right join token:
                                      approved with its own NATS user; otherwise quarantined), records
                                      heartbeats, serves hosts approve|reject. Prints a JSON "ready" line.
  token [<site-dir>]                  print the site's join token for netfleet-agent run --token
                                      (creates the state dir's secrets when given the site)
  hosts [<site-dir>]                  enrolled and inventory hosts: state, match, last seen
  hosts approve|reject NAME           approve a quarantined host / revoke a host (needs serve running)
  status [<site-dir>]                 per host: enrolled, last seen, desired vs applied revision, drift,
                                      drift the agent repaired (count, last; --json: the last 20 with
                                      before/after), warnings (foreign-drop: ...)
  audit VM [<site-dir>] [--since 1h|ISO]
                                      what VM reached through the backend's gateway and what the gateway
                                      refused (its audit log: new outbound connections and drops, kept
                                      30 days), oldest first; --since: a duration back (90s, 15m, 1h, 7d)
                                      or an ISO date-time, default 24h. VM: an inventory VM name; its
                                      address is its static ip, extra addresses or current DHCP lease
  rollout <site-dir> [--check] [--batch N|P%] [--max-fail N|P%] [--limit PAT,...] [--parallel N]
                     [--resume | --abandon] [--timeout S] [--lock-stale S]
                                      per-host diff, then backends before VM hosts: a canary, then
                                      waves of --batch (default 25%), --parallel at a time (default the
                                      wave); judged on each agent's verified report. A failed canary,
                                      or more than --max-fail (default 0) failed hosts, stops it and
                                      reverts the hosts it changed. --check: the same, agents only
                                      say what they would change. --limit: host, group or role
                                      patterns (* ?). --resume: continue a rollout whose controller
                                      died (waits for its lock to go stale, --lock-stale, default 15 s);
                                      --abandon: start anew over it instead (its hosts keep what they got).
                                      --timeout: per host, default 180 s. A second rollout of the site
                                      while one runs is refused (exit 4).
                                      Exit: 0 success, 3 partial (some hosts failed within the budget),
                                      1 failed (stopped and reverted), 4 refused (lock held), 2 invalid.

Servers: commands connect to --nats URL[,URL...], else the servers serve recorded in the state
dir, else the inventory's site.nats.

Options:
  --json                              machine-readable output on every command (rollout: JSON lines)

Exit codes: 0 ok, 1 runtime error, 2 invalid input (nothing was changed), 64 usage error.
`;

export async function main(argv: string[], out?: CommandOutput): Promise<number> {
  const [command, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean", default: false },
        host: { type: "string" },
        out: { type: "string" },
        prefix: { type: "string" },
        "run-dir": { type: "string" },
        inventory: { type: "string" },
        "state-dir": { type: "string" },
        nats: { type: "string" },
        listen: { type: "string" },
        nodes: { type: "string" },
        check: { type: "boolean", default: false },
        batch: { type: "string" },
        "max-fail": { type: "string" },
        parallel: { type: "string" },
        limit: { type: "string" },
        resume: { type: "boolean", default: false },
        abandon: { type: "boolean", default: false },
        timeout: { type: "string" },
        "lock-stale": { type: "string" },
        token: { type: "string" },
        "accept-new": { type: "boolean", default: false },
        concurrency: { type: "string" },
        identity: { type: "string" },
        "known-hosts": { type: "string" },
        user: { type: "string" },
        port: { type: "string" },
        "image-root": { type: "string" },
        since: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`netfleet: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  const o = out ?? consoleOutput(parsed.values.json ?? false);
  const positional = parsed.positionals;
  const needDir = (): string | undefined => {
    if (positional.length !== 1) {
      o.error(`netfleet ${command}: expected exactly one site folder, e.g. inventories/lab`);
      return undefined;
    }
    return positional[0];
  };
  if (parsed.values.help || command === undefined || command === "help" || command === "--help" || command === "-h") {
    o.line(HELP.trimEnd());
    return command === undefined ? EXIT_USAGE : 0;
  }
  switch (command) {
    case "validate": {
      const dir = needDir();
      return dir === undefined ? EXIT_USAGE : validateCommand(dir, o);
    }
    case "plan": {
      const dir = needDir();
      return dir === undefined ? EXIT_USAGE : planCommand(dir, parsed.values.host !== undefined ? { host: parsed.values.host } : {}, o);
    }
    case "compile": {
      const dir = needDir();
      if (dir === undefined || !parsed.values.out) {
        o.error("netfleet compile: usage: netfleet compile <site-dir> --out DIR");
        return EXIT_USAGE;
      }
      return compileCommand(dir, parsed.values.out, o);
    }
    case "lab": {
      const [sub, ...extra] = positional;
      if (extra.length > 0) {
        o.error(`netfleet lab: unexpected ${extra.join(" ")}`);
        return EXIT_USAGE;
      }
      let lab;
      try {
        lab = labOptions(parsed.values);
      } catch (err) {
        o.error(`netfleet lab: ${(err as Error).message}`);
        return EXIT_USAGE;
      }
      return labCommand(sub, lab, o);
    }
    case "serve": {
      const dir = needDir();
      if (dir === undefined) return EXIT_USAGE;
      let listen, servers;
      const nodes = parsed.values.nodes ?? "1";
      try {
        if (parsed.values.listen) listen = parseListen(parsed.values.listen);
        if (parsed.values.nats) servers = parseServers(parsed.values.nats);
        if (nodes !== "1" && nodes !== "3") throw new Error("--nodes is 1 or 3");
      } catch (err) {
        o.error(`netfleet serve: ${(err as Error).message}`);
        return EXIT_USAGE;
      }
      const inventory = loadOrReport(dir, o);
      if (!inventory) return EXIT_INVALID;
      return serveCommand(inventory, { stateDir: stateDirOf(parsed.values["state-dir"]), nodes: nodes === "3" ? 3 : 1, ...(listen ? { listen } : {}), ...(servers ? { external: servers } : {}) }, o);
    }
    case "bootstrap": {
      const dir = needDir();
      if (dir === undefined) return EXIT_USAGE;
      let opts;
      try {
        opts = bootstrapOptions(parsed.values);
      } catch (err) {
        o.error(`netfleet bootstrap: ${(err as Error).message}`);
        return EXIT_USAGE;
      }
      const inventory = loadOrReport(dir, o);
      if (!inventory) return EXIT_INVALID;
      return bootstrapCommand(inventory, opts, o);
    }
    case "token": {
      let site: string | undefined;
      if (positional.length > 1) {
        o.error("netfleet token: usage: netfleet token [<site-dir>] [--state-dir DIR]");
        return EXIT_USAGE;
      }
      if (positional.length === 1) {
        const inventory = loadOrReport(positional[0]!, o);
        if (!inventory) return EXIT_INVALID;
        site = inventory.site.name;
      }
      const secrets = await new ControllerHome(stateDirOf(parsed.values["state-dir"])).secrets(site);
      if (o.json) o.emit({ site: secrets.site, token: secrets.enrollment.token });
      else o.line(secrets.enrollment.token);
      return 0;
    }
    case "hosts":
    case "status": {
      const [first, second, ...extra] = positional;
      const action = command === "hosts" && (first === "approve" || first === "reject") ? first : undefined;
      if (extra.length > 0 || (action && !second) || (!action && second !== undefined)) {
        o.error(`netfleet ${command}: usage: netfleet ${command === "hosts" ? "hosts [<site-dir>] | hosts approve|reject NAME" : "status [<site-dir>]"} [--state-dir DIR] [--nats URLS]`);
        return EXIT_USAGE;
      }
      let inventory;
      if (!action && first !== undefined) {
        inventory = loadOrReport(first, o);
        if (!inventory) return EXIT_INVALID;
      }
      let servers;
      try {
        if (parsed.values.nats) servers = parseServers(parsed.values.nats);
      } catch (err) {
        o.error(`netfleet ${command}: ${(err as Error).message}`);
        return EXIT_USAGE;
      }
      const { cp } = await withTimeout(connectController({ stateDir: stateDirOf(parsed.values["state-dir"]), ...(inventory ? { inventory } : {}), ...(servers ? { servers } : {}) }), 30_000, "connecting to NATS");
      try {
        if (action) return await hostsActionCommand(cp, action, second!, o);
        return command === "hosts" ? await hostsCommand(cp, o) : await statusCommand(cp, o);
      } finally {
        await cp.close();
      }
    }
    case "audit": {
      const [vm, dir, ...extra] = positional;
      let since, servers;
      try {
        if (!vm || extra.length > 0) throw new Error("usage: netfleet audit VM [<site-dir>] [--since 1h|ISO] [--json] [--state-dir DIR] [--nats URLS]");
        since = parsed.values.since !== undefined ? parseSince(parsed.values.since) : new Date(Date.now() - AUDIT_DEFAULT_SINCE_MS);
        if (parsed.values.nats) servers = parseServers(parsed.values.nats);
      } catch (err) {
        o.error(`netfleet audit: ${(err as Error).message}`);
        return EXIT_USAGE;
      }
      let inventory;
      if (dir !== undefined) {
        inventory = loadOrReport(dir, o);
        if (!inventory) return EXIT_INVALID;
      }
      const connected = await withTimeout(connectController({ stateDir: stateDirOf(parsed.values["state-dir"]), ...(inventory ? { inventory } : {}), ...(servers ? { servers } : {}) }), 30_000, "connecting to NATS");
      try {
        if (!connected.inventory) {
          o.error("netfleet audit: no inventory: give the site folder (netfleet audit VM <site-dir>)");
          return EXIT_USAGE;
        }
        return await auditCommand(connected.cp, connected.inventory, vm, since, o);
      } finally {
        await connected.cp.close();
      }
    }
    case "rollout": {
      const dir = needDir();
      if (dir === undefined) return EXIT_USAGE;
      const v = parsed.values;
      let opts;
      try {
        const seconds = (flag: string, text: string | undefined) => {
          if (text === undefined) return undefined;
          const n = Number(text);
          if (!(n > 0)) throw new Error(`--${flag} takes a number of seconds`);
          return n * 1000;
        };
        const parallel = v.parallel === undefined ? undefined : Number(v.parallel);
        if (parallel !== undefined && !(Number.isInteger(parallel) && parallel >= 1)) throw new Error("--parallel takes a whole number >= 1");
        const applyTimeoutMs = seconds("timeout", v.timeout);
        const lockStaleMs = seconds("lock-stale", v["lock-stale"]);
        opts = {
          stateDir: stateDirOf(v["state-dir"]),
          check: v.check ?? false,
          resume: v.resume ?? false,
          ...(v.abandon ? { abandon: true } : {}),
          tty: !o.json && process.stdout.isTTY === true,
          ...(v.nats ? { servers: parseServers(v.nats) } : {}),
          ...(v.batch ? { batch: parseAmount(v.batch, "--batch") } : {}),
          ...(v["max-fail"] ? { maxFail: parseAmount(v["max-fail"], "--max-fail") } : {}),
          ...(parallel ? { parallel } : {}),
          ...(v.limit ? { limit: v.limit.split(",").map((p) => p.trim()).filter(Boolean) } : {}),
          ...(applyTimeoutMs ? { applyTimeoutMs } : {}),
          ...(lockStaleMs ? { lockStaleMs } : {}),
        };
        if (opts.batch && "count" in opts.batch && opts.batch.count < 1) throw new Error("--batch must be at least 1");
        if (opts.check && opts.resume) throw new Error("--check and --resume do not go together");
        if (opts.resume && v.abandon) throw new Error("--resume and --abandon do not go together");
      } catch (err) {
        o.error(`netfleet rollout: ${(err as Error).message}`);
        return EXIT_USAGE;
      }
      const inventory = loadOrReport(dir, o);
      if (!inventory) return ROLLOUT_EXIT.invalid;
      return rolloutCommand(inventory, opts, o);
    }
    case "schema": {
      const text = JSON.stringify(inventoryJsonSchema(), null, 2) + "\n";
      if (parsed.values.out) writeFileSync(parsed.values.out, text);
      else process.stdout.write(text);
      return 0;
    }
    default:
      o.error(`netfleet: unknown command ${JSON.stringify(command)}; see netfleet help`);
      return EXIT_USAGE;
  }
}
