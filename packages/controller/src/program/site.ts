import { writeFileSync } from "node:fs";
import { Option, type Command } from "commander";
import { withExitCode } from "@netfleet/shared/cli";
import type { BootstrapFlags } from "../commands/bootstrap.ts";
import { checked, jsonOption, LIMIT_HELP, limitOption, stateDirOption, type Context } from "./options.ts";

/** Commander's values of `netfleet bootstrap` (camelCase keys). */
type BootstrapValues = BootstrapFlags & { json?: boolean };

/** The commands that read a site folder and need no controller: validate, plan, compile, schema, bootstrap. */
export function addSiteCommands(program: Command, ctx: Context): void {
  program
    .command("validate")
    .summary("Check an inventory; one line per problem.")
    .description("Check an inventory: one line per problem (file:line:col: path: message); --json: every problem.")
    .argument("<site-dir>", "the site folder, e.g. inventories/lab")
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string, o: { json?: boolean }) => {
      const { validateCommand } = await import("../commands/validate.ts");
      return validateCommand(dir, ctx.output(o.json ?? false));
    }));

  program
    .command("plan")
    .summary("Show per host the resources it must hold and the commands of a first apply.")
    .description("Show per host the resources it must hold and the commands of a first apply. Long commands are cut in the text output; --json has them whole.")
    .argument("<site-dir>", "the site folder")
    .option("--host <name>", "only this host")
    .addOption(limitOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string, o: { host?: string; limit?: string[]; json?: boolean }) => {
      const { planCommand } = await import("../commands/plan.ts");
      return planCommand(dir, { ...(o.host !== undefined ? { host: o.host } : {}), ...(o.limit ? { limit: o.limit } : {}) }, ctx.output(o.json ?? false));
    }));

  program
    .command("compile")
    .summary("Write each host's assignment to DIR/<host>.json.")
    .description("Write each host's assignment to DIR/<host>.json (for netfleet-agent apply).")
    .argument("<site-dir>", "the site folder")
    .requiredOption("--out <dir>", "where the assignment files go (required)")
    .addOption(limitOption())
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string, o: { out: string; limit?: string[]; json?: boolean }) => {
      const { compileCommand } = await import("../commands/plan.ts");
      return compileCommand(dir, o.out, ctx.output(o.json ?? false), o.limit ? { limit: o.limit } : {});
    }));

  program
    .command("schema")
    .summary("Print (or write) the JSON Schema of inventory files, for editors.")
    .description("Print (or write to --out) the JSON Schema of inventory files, for editors.")
    .option("--out <file>", "write it to this file instead")
    .option("--markdown", "the field reference (markdown: every key, type, default, allowed values, description) instead of the JSON Schema")
    .action(withExitCode(async (o: { out?: string; markdown?: boolean }) => {
      const { inventoryJsonSchema, inventoryReference } = await import("@netfleet/shared");
      const text = o.markdown ? inventoryReference() : JSON.stringify(inventoryJsonSchema(), null, 2) + "\n";
      if (o.out) writeFileSync(o.out, text);
      else process.stdout.write(text);
      return 0;
    }));

  program
    .command("bootstrap")
    .summary("Install the agent over SSH, or into a host image.")
    .description(
      "Install the agent over SSH (host keys checked against known_hosts; --accept-new records new ones, a changed one is refused), " +
        "write its config and systemd unit, start it; or write the same files into a host image (--image-root) so the host enrolls on first boot. " +
        "Each host gets its own single-use host token, minted from the state dir (approved at once when it enrolls); " +
        "--token-file gives every host the site's join token instead (its hosts wait for netfleet hosts approve).",
    )
    .argument("<site-dir>", "the site folder")
    .addOption(stateDirOption())
    .option("--token-ttl <duration>", "how long each minted host token is accepted: 90s, 15m, 24h, 7d (default 24h, at most 30d)")
    .option("--token-file <file>", "give every host the site's join token (netfleet token prints it) instead: a file (mode 0600), or - to read it from stdin")
    // Refused with a usage error: a token on the command line is in ps for every local user.
    .addOption(new Option("--token <token>").hideHelp())
    .option("--nats <urls>", "NATS servers the agents connect to (default the site's site.nats); nats://host:port[,nats://host:port...]")
    .option("--limit <patterns>", LIMIT_HELP)
    .option("--accept-new", "record the host keys of hosts not yet in known_hosts")
    .option("--identity <file>", "SSH private key (default the first of ~/.ssh/id_*, else ssh-agent)")
    .option("--known-hosts <file>", "known_hosts file (default ~/.ssh/known_hosts)")
    .option("--user <login>", "SSH login (default root)")
    .option("--port <n>", "SSH port (default 22)")
    .option("--concurrency <n>", "hosts at a time (default 8)")
    .option("--image-root <dir>", "write the agent's files into this mounted image root instead of connecting")
    .option("--host <name>", "with --image-root: the image is for this inventory host (its name and its own host token)")
    .addOption(jsonOption())
    .action(withExitCode(async (dir: string, o: BootstrapValues, cmd: Command) => {
      const [{ bootstrapCommand, bootstrapOptions }, { EXIT_INVALID, loadOrReport }] = await Promise.all([import("../commands/bootstrap.ts"), import("../commands/validate.ts")]);
      const opts = checked(cmd, () => bootstrapOptions(o));
      const out = ctx.output(o.json ?? false);
      const inventory = loadOrReport(dir, out);
      if (!inventory) return EXIT_INVALID;
      return bootstrapCommand(inventory, opts, out);
    }));
}
