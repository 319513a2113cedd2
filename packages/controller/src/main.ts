import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { inventoryJsonSchema } from "@netfleet/shared";
import { compileCommand, planCommand } from "./commands/plan.ts";
import { labCommand, labOptions } from "./commands/lab.ts";
import { validateCommand } from "./commands/validate.ts";
import { consoleOutput, type CommandOutput } from "./output.ts";

export const EXIT_USAGE = 64;

const HELP = `netfleet — fleet manager for the virtual networks of KVM/libvirt clusters on Open vSwitch

Usage: netfleet <command> [options]

Commands:
  validate <site-dir>                 check an inventory; one line per problem (file:line:col: path: message)
  plan <site-dir> [--host NAME]       per host: the resources it must hold and the commands of a first apply
  compile <site-dir> --out DIR         write each host's assignment to DIR/<host>.json (for netfleet-agent apply)
  lab up|down|status|check            the local lab: hosts and VMs as namespaces, real OVS, libvirtd,
                                      dnsmasq, nftables; check prints the connectivity matrix
      [--prefix P] [--run-dir DIR]    name and place of the lab (default nf, /run/netfleet-lab/nf)
  schema [--out FILE]                 print (or write) the JSON Schema of inventory files, for editors
  help                                this text

Options:
  --json                              machine-readable output on every command

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
