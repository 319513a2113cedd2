/**
 * `netfleet-lab up|down|status|check|attack|rollout`: the lab's own command
 * line. Every subcommand takes --prefix, --run-dir and --json (all but
 * rollout --inventory); a usage error (unknown command or option, bad
 * --prefix) exits 64 (@netfleet/shared/cli).
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { InventoryError, loadInventory } from "@netfleet/shared";
import { addCompletionCommand, createProgram, runProgram, safeJson, usageError, withExitCode, type ProgramIo } from "@netfleet/shared/cli";
import { labAttack } from "./checks/attack-run.ts";
import { connectivityProbes, runProbes } from "./checks/connectivity.ts";
import type { CheckRow } from "./checks/rows.ts";
import { labDown } from "./down.ts";
import { LabShapeError, labRollout } from "./playground.ts";
import { readLabState } from "./state.ts";
import { labStatus } from "./status.ts";
import { labUp } from "./up.ts";
import { rowLines, statusLines } from "./render.ts";
import type { LabOptions, LabStatus } from "./types.ts";

const DEFAULT_LAB_PREFIX = "nf";

const EXIT_CODES = `
Exit codes: 0 all rows as expected (up, status: the lab is up), 1 a row off or the lab not up
(or a runtime error), 64 usage error. rollout: netfleet rollout's code when not 0 (1 failed and
reverted, 2 invalid site or one that does not fit the lab, 3 partial, 4 refused), else the check's.`;
/** The site a lab builds unless --inventory names another: the repository's `inventories/lab`. */
const DEFAULT_INVENTORY = resolve(import.meta.dirname, "..", "..", "..", "inventories", "lab");

interface LabFlags {
  prefix?: string;
  runDir?: string;
  inventory?: string;
  json?: boolean;
}

/**
 * LabOptions from the command line's flags; throws on a prefix that cannot
 * name namespaces. Without --inventory: `running` (check, attack) takes the
 * site the lab last rolled out (lab.json), else inventories/lab.
 */
function labOptions(flags: LabFlags, running = false): LabOptions {
  const prefix = flags.prefix ?? DEFAULT_LAB_PREFIX;
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) throw new Error(`--prefix must be 1-6 of a-z 0-9, starting with a letter (got ${JSON.stringify(prefix)})`);
  const runDir = resolve(flags.runDir ?? `/run/netfleet-lab/${prefix}`);
  const rolledOut = running && flags.inventory === undefined ? readLabState(runDir)?.rolledOut?.dir : undefined;
  return { inventoryDir: resolve(flags.inventory ?? rolledOut ?? DEFAULT_INVENTORY), prefix, runDir };
}

/** The connectivity matrix of a lab that is up; throws when it is not. */
async function labCheck(o: LabOptions, status?: LabStatus): Promise<CheckRow[]> {
  const st = status ?? (await labStatus(o));
  if (!st.up) throw new Error(`the lab is not up: ${(st.problems ?? []).join("; ") || "run netfleet-lab up"}`);
  return runProbes(connectivityProbes(loadInventory(o.inventoryDir), st));
}

/** Where the program writes: text lines, or one JSON document with --json; `error` a line for stderr. */
interface Out {
  line(text: string): void;
  json(value: unknown): void;
  error(text: string): void;
}

const stdout: Out = {
  line: (text) => process.stdout.write(text + "\n"),
  json: (value) => process.stdout.write(safeJson(value) + "\n"),
  error: (text) => process.stderr.write(text + "\n"),
};

/** What each subcommand does: its exit code (0 as expected, 1 not). `running`: without --inventory it probes the site last rolled out. */
const ACTIONS: Record<string, { summary: string; running?: boolean; run: (o: LabOptions, json: boolean, out: Out) => Promise<number> }> = {
  up: {
    summary: "Build (or repair) the lab: hosts and VMs as namespaces, real OVS, libvirtd, dnsmasq, nftables, the product's agents.",
    run: async (o, json, out) => {
      const st = await labUp(o, json ? () => {} : (line) => out.line(line));
      if (json) out.json(st);
      else out.line(`lab ${o.prefix} is up: ${st.hosts.length} hosts, ${st.vms.length} VMs (netfleet-lab status for details)`);
      return st.up ? 0 : 1;
    },
  },
  down: {
    summary: "Remove everything the lab made: processes, namespaces, run dir.",
    run: async (o, json, out) => {
      await labDown(o);
      if (json) out.json({ down: true, prefix: o.prefix });
      else out.line(`lab ${o.prefix} is down; nothing left behind`);
      return 0;
    },
  },
  status: {
    summary: "Show what is up: hosts, VMs, leases, and what is missing.",
    run: async (o, json, out) => {
      const st = await labStatus(o);
      if (json) out.json(st);
      else for (const l of statusLines(st)) out.line(l);
      return st.up ? 0 : 1;
    },
  },
  check: {
    summary: "Check the connectivity matrix: every expected reach and block, DHCP, DNS, masquerading.",
    running: true,
    run: async (o, json, out) => {
      const rows = await labCheck(o);
      if (json) out.json(rows);
      else for (const l of rowLines(rows)) out.line(l);
      return rows.every((r) => r.ok) ? 0 : 1;
    },
  },
  attack: {
    summary: "Send crafted frames (scapy) from VM namespaces, look for them at their targets, each beside a positive control.",
    running: true,
    run: async (o, json, out) => {
      const rows = await labAttack(loadInventory(o.inventoryDir), await labStatus(o));
      if (json) out.json(rows);
      else for (const l of rowLines(rows)) out.line(l);
      return rows.every((r) => r.ok) ? 0 : 1;
    },
  },
};

/**
 * Runs `netfleet-lab` on argv (without node and the script) and returns the
 * exit code: the subcommand's, 0 after --help/--version, EXIT_USAGE (64)
 * after a usage error (printed with a suggestion for a mistyped command or
 * option). `netfleet-lab completion bash|zsh` prints a completion script.
 * `out` and `io` (commander's own help and errors) default to the process's streams.
 */
export async function main(argv: string[], out: Out = stdout, io?: ProgramIo): Promise<number> {
  const program = createProgram({
    ...(io ? { io } : {}),
    name: "netfleet-lab",
    description: "The netfleet lab: a site as network namespaces, driven by the product's own commands.",
    packageJson: new URL("../package.json", import.meta.url),
  });
  for (const [name, action] of Object.entries(ACTIONS)) {
    program
      .command(name)
      .description(action.summary)
      .option("--prefix <p>", `namespace prefix: every namespace is <p>-<name> (default ${DEFAULT_LAB_PREFIX})`)
      .option("--run-dir <dir>", "all state of the lab (default /run/netfleet-lab/<prefix>)")
      .option("--inventory <dir>", action.running ? "the site it probes (default the one last rolled out, else inventories/lab)" : "the site it builds (default inventories/lab)")
      .option("--json", "one JSON document on stdout")
      .action(
        withExitCode(async (flags: LabFlags, cmd: Command) => {
          let o: LabOptions;
          try {
            o = labOptions(flags, action.running);
          } catch (err) {
            usageError(cmd, (err as Error).message);
          }
          return action.run(o, flags.json === true, out);
        }),
      );
  }
  addRolloutCommand(program, out);
  addCompletionCommand(program);
  program.addHelpText("after", EXIT_CODES);
  return runProgram(program, argv);
}

/**
 * `netfleet-lab rollout DIR [--check]`: rolls an edited site folder out to
 * the running lab through its controller (labRollout), prints netfleet
 * rollout's output as it comes, then the connectivity matrix of DIR (not after --check,
 * nor after a rollout that failed). --json: one document
 * `{ rollout: { dir, check, exitCode, stdout, stderr }, check?: rows }`, stdout
 * holding rollout's JSON events.
 */
function addRolloutCommand(program: Command, out: Out): void {
  program
    .command("rollout")
    .description("Roll an edited site folder out to the running lab (its hosts, VMs and networks as built), then check the connectivity matrix against it.")
    .argument("<dir>", "the site folder: a copy of the lab's inventory, edited (port-forwards, allow lists, egress, DHCP, DNS...)")
    .option("--check", "only show what the agents would change (netfleet rollout --check); nothing changes, no matrix")
    .option("--prefix <p>", `namespace prefix of the lab (default ${DEFAULT_LAB_PREFIX})`)
    .option("--run-dir <dir>", "all state of the lab (default /run/netfleet-lab/<prefix>)")
    .option("--json", "one JSON document on stdout")
    .action(
      withExitCode(async (dir: string, flags: LabFlags & { check?: boolean }, cmd: Command) => {
        let o: LabOptions;
        try {
          o = labOptions(flags);
        } catch (err) {
          usageError(cmd, (err as Error).message);
        }
        const json = flags.json === true;
        let r;
        try {
          r = await labRollout(o, dir, { check: flags.check === true, json, ...(json ? {} : { onLine: (l: string) => out.line(l) }) });
        } catch (err) {
          if (!(err instanceof InventoryError || err instanceof LabShapeError)) throw err;
          if (json) out.json({ error: err.message, ...(err instanceof LabShapeError ? { changes: err.changes } : {}) });
          else out.error(`netfleet-lab rollout: ${err.message}`);
          return 2;
        }
        const events = r.stdout.map((l) => {
          try {
            return JSON.parse(l) as unknown;
          } catch {
            return l;
          }
        });
        if (!json) for (const l of r.stderr) out.error(l);
        if (r.check || r.exitCode !== 0) {
          if (json) out.json({ rollout: { ...r, stdout: events } });
          else if (r.exitCode !== 0) out.line(`netfleet rollout exited ${r.exitCode}: no check run`);
          return r.exitCode;
        }
        const rows = await labCheck({ ...o, inventoryDir: r.dir });
        if (json) out.json({ rollout: { ...r, stdout: events }, check: rows });
        else {
          out.line(`lab check of ${r.dir}:`);
          for (const l of rowLines(rows)) out.line(l);
        }
        return rows.every((row) => row.ok) ? 0 : 1;
      }),
    );
}
