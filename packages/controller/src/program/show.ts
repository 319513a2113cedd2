import { CommanderError, type Command } from "commander";
import { DNS_LABEL, quoteToken } from "@netfleet/shared";
import { isBug, usageError, withExitCode } from "@netfleet/shared/cli";
import { withController, type ControllerFlags } from "./control.ts";
import { jsonOption, limitOption, natsOption, seconds, stateDirOption, type Context } from "./options.ts";

const SHOW_HELP = `
Asks the host's agent over NATS (nf.<site>.show.<host>; only that host's agent may answer)
what it sees now, and prints it: bonds and members, VLAN interfaces, addresses, the OVS
bridges, ports, tags and trunks in ovs-vsctl show's layout with a summary of each bridge's
OpenFlow rules, every VM port with the addresses its anti-spoofing rules let it use, whether
it is isolated, the packets its rules passed and dropped and its lease, the libvirt networks,
the DHCP leases, the nft table's allow sets and name sets and its counters, and interface
counters. The agent runs read-only commands only; nothing is written anywhere.

--json: one host's {host, ok, revision, hash, view} (view: the HostView), or with --limit
{hosts: [...]}. netfleet-agent show prints the same view on the host itself.

site-dir: the site folder whose hosts, groups and labels HOST and --limit are matched against
(default the inventory serve recorded; enrolled hosts count too).

Exit codes: 0 every host shown, 1 a host did not answer (not connected, or an agent
older than show) or could not be read, or NATS could not be reached, 2 an unknown host, a
--limit that selects nothing or an invalid site folder, 64 usage error.`;

/** `netfleet show <host> [site-dir]` or `netfleet show --limit PATTERNS [site-dir]` (`--json`, `--timeout S`): the live state of hosts, from their agents. */
export function addShowCommand(program: Command, ctx: Context): void {
  program
    .command("show")
    .summary("Show what a host has now, as its agent sees it: bonds, VLANs, OVS, VM ports and their policy, leases, nft sets, counters.")
    .description("Show what a host has now, as its agent sees it (read only): bonds, VLANs, OVS bridges and ports, VM ports and their policy, libvirt networks, leases, nft allow sets, counters.")
    .usage("[options] <host> [site-dir]\n       netfleet show [options] --limit <patterns> [site-dir]")
    .argument("[host]", "the host (an inventory or enrolled host name); or --limit")
    .argument("[site-dir]", "the site folder, for the hosts' groups and labels (default the one serve recorded)")
    .addOption(limitOption())
    .option("--timeout <s>", "how long each agent has to answer, seconds (default 20)", seconds("--timeout"))
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .addHelpText("after", SHOW_HELP)
    .action(withExitCode(async (first: string | undefined, second: string | undefined, o: ControllerFlags & { limit?: string[]; timeout?: number }, cmd: Command) => {
      // With --limit the one argument is the site folder; else HOST, then the site folder.
      const host = o.limit === undefined ? first : undefined;
      const dir = o.limit === undefined ? second : first;
      if (o.limit !== undefined && second !== undefined) usageError(cmd, "give a HOST or --limit PATTERNS, not both");
      if (host === undefined && o.limit === undefined) usageError(cmd, "give a HOST or --limit PATTERNS (one of them)");
      if (host !== undefined && !DNS_LABEL.test(host)) {
        if (/[*?[!&=:,]/.test(host)) usageError(cmd, `${quoteToken(host)} is a pattern, not a host name: netfleet show --limit ${quoteToken(host)} shows every host it selects`);
        usageError(cmd, `${quoteToken(host)} is not a host name: host names are DNS labels, lower-case letters, digits and - (netfleet hosts lists them)`);
      }
      const out = ctx.output(o.json ?? false);
      const [{ showCommand, showTargets, SHOW_EXIT, UnknownHostError }, { LimitError }, { EXIT_INVALID, loadOrReport }] = await Promise.all([
        import("../commands/show.ts"),
        import("../select/limit.ts"),
        import("../commands/validate.ts"),
      ]);
      const inventory = dir === undefined ? undefined : loadOrReport(dir, out);
      if (dir !== undefined && !inventory) return EXIT_INVALID;
      try {
        return await withController(cmd, o, inventory, async (c) => {
          const hosts = await showTargets(c, { ...(host !== undefined ? { host } : {}), ...(o.limit ? { limit: o.limit } : {}) });
          return showCommand(c, hosts, out, { timeoutMs: o.timeout ?? 20_000, single: host !== undefined });
        });
      } catch (err) {
        // A usage error (a bad --nats) is commander's own, already printed.
        if (isBug(err) || err instanceof CommanderError) throw err;
        out.error(`netfleet show: ${(err as Error).message}`);
        return err instanceof UnknownHostError || err instanceof LimitError ? SHOW_EXIT.invalid : SHOW_EXIT.unanswered;
      }
    }));
}
