import { CommanderError, Option, type Command } from "commander";
import { isBug, withExitCode } from "@netfleet/shared/cli";
import { withController, type ControllerFlags } from "./control.ts";
import { jsonOption, natsOption, seconds, stateDirOption, type Context } from "./options.ts";

const GRAPH_HELP = `
Draws the site from its inventory: each host (a box) with its uplink (the NICs, the bond, its
mode, LACP and MTU; kernel mode's VLAN interfaces <bond>.<vlan>, ovs-trunk's trunk bridge and
tagged patch ports), its networks' OVS bridges and the VMs on them; the backend's gateway ports,
the gateway (nftables, dnsmasq, port forwards) and its exits to the outside; one node per network
(VLAN, addresses, gateway, MTU, egress) joining the hosts that carry it; the switch the NICs are
cabled to. svg is laid out by Graphviz (dot -Tsvg; Debian package graphviz); dot and mermaid
are text for other tools (Markdown pages that render Mermaid).

--live colours each element from the controller: the host's health as netfleet status judges it
(converged; drift, failed or waiting for approval: drift; unreachable: down) and what its agent
sees now as netfleet show reads it (a link up or down, an OVS bridge or port present, a VM's port
present with netfleet's rules, the nft table); a network takes the worst of its hosts. It reads
only. Needs the controller (--state-dir, --nats, as status).

--json: {site, format, live, elements: [{id, kind, name, host, label, state?, reason?}], links,
picture} (or out: the file it wrote instead of picture).

Exit codes: 0 drawn, 1 Graphviz failed or is missing, or (--live) the controller could not be
read, 2 an invalid site folder or an --out that cannot be written, 64 usage error.`;

/** `netfleet graph <site-dir> [--live] [--format svg|dot|mermaid] [--out FILE] [--json]`: the topology picture. */
export function addGraphCommand(program: Command, ctx: Context): void {
  program
    .command("graph")
    .summary("Draw the site: hosts, uplinks, VLANs, bridges, networks, VMs, the gateway and the exit (svg, dot, mermaid); --live colours them.")
    .description("Draw the site's topology from its inventory (svg through Graphviz, dot, or mermaid); --live colours each element converged, drift or down from status and show.")
    .argument("<site-dir>", "the site folder, e.g. inventories/lab")
    .addOption(new Option("--format <format>", "svg, dot or mermaid (default: from --out's extension .svg .dot .gv .mmd, else svg)").choices(["svg", "dot", "mermaid"]))
    .option("--out <file>", "write the picture to this file instead of stdout")
    .option("--live", "colour each element from the controller's status and the agents' show")
    .option("--timeout <s>", "--live: how long each agent has to answer show, seconds (default 10)", seconds("--timeout"))
    .option("--unreachable-after <s>", "--live: a host not heard from for this long is down, seconds (default 90)", seconds("--unreachable-after"))
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption())
    .addHelpText("after", GRAPH_HELP)
    .action(withExitCode(async (dir: string, o: ControllerFlags & { format?: string; out?: string; live?: boolean; timeout?: number; unreachableAfter?: number }, cmd: Command) => {
      const out = ctx.output(o.json ?? false);
      const [{ graphCommand, graphFormat, GRAPH_EXIT }, { EXIT_INVALID, loadOrReport }] = await Promise.all([import("../commands/graph.ts"), import("../commands/validate.ts")]);
      const format = graphFormat(o.format, o.out);
      const inventory = loadOrReport(dir, out);
      if (!inventory) return EXIT_INVALID;
      const base = { format, ...(o.out !== undefined ? { out: o.out } : {}) };
      if (!o.live) return graphCommand(inventory, base, out);
      const [{ readLive }, { UNREACHABLE_AFTER_MS }] = await Promise.all([import("../graph/live-read.ts"), import("../commands/hosts.ts")]);
      try {
        return await withController(cmd, o, inventory, async ({ cp }) => {
          const hosts = await readLive(cp, inventory, { timeoutMs: o.timeout ?? 10_000, unreachableAfterMs: o.unreachableAfter ?? UNREACHABLE_AFTER_MS });
          return graphCommand(inventory, { ...base, hosts }, out);
        });
      } catch (err) {
        if (isBug(err) || err instanceof CommanderError) throw err;
        out.error(`netfleet graph: ${(err as Error).message}`);
        return GRAPH_EXIT.failed;
      }
    }));
}
