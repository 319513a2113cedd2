import { escapeText, formatProblem, InventoryError, loadInventory, type InputProblem, type Inventory } from "@netfleet/shared";
import type { CommandOutput } from "../output.ts";

/** Exit code of a command refused for invalid input (the inventory): nothing was changed. */
export const EXIT_INVALID = 2;

/**
 * At most this many problems are printed as lines: a file with 20,000 bad
 * keys should not bury the first problem under 20,000 lines of CI log.
 * `--json` carries every problem.
 */
const MAX_PRINTED_PROBLEMS = 100;

/** One line per problem (escaped by `formatProblem`), the first MAX_PRINTED_PROBLEMS, then "... and N more problems". */
export function problemLines(problems: readonly InputProblem[], max = MAX_PRINTED_PROBLEMS): string[] {
  const lines = problems.slice(0, max).map(formatProblem);
  const more = problems.length - lines.length;
  if (more > 0) lines.push(`... and ${more} more problem${more === 1 ? "" : "s"}`);
  return lines;
}

/** Loads a site; on bad input prints one line per problem (at most MAX_PRINTED_PROBLEMS) and returns undefined. */
export function loadOrReport(dir: string, out: CommandOutput): Inventory | undefined {
  try {
    return loadInventory(dir);
  } catch (err) {
    if (!(err instanceof InventoryError)) throw err;
    if (out.json) out.emit({ valid: false, problems: err.problems });
    else for (const line of problemLines(err.problems)) out.error(line);
    return undefined;
  }
}

/** `netfleet validate DIR`: 0 and a summary when the site is valid, EXIT_INVALID and the problems when not. */
export function validateCommand(dir: string, out: CommandOutput): number {
  const inventory = loadOrReport(dir, out);
  if (!inventory) return EXIT_INVALID;
  const vms = inventory.networks.reduce((n, net) => n + net.vms.length, 0);
  if (out.json) {
    out.emit({ valid: true, site: inventory.site.name, networks: inventory.networks.length, hosts: inventory.hosts.length, vms, problems: [] });
  } else {
    out.line(`${escapeText(dir)}: valid — site ${inventory.site.name}, ${inventory.networks.length} networks, ${inventory.hosts.length} hosts, ${vms} VMs`);
  }
  return 0;
}
