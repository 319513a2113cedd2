import { InventoryError, loadInventory, type Inventory } from "@netfleet/shared";
import type { CommandOutput } from "../output.ts";

export const EXIT_INVALID = 2;

/** Loads a site; on bad input prints one line per problem and returns undefined. */
export function loadOrReport(dir: string, out: CommandOutput): Inventory | undefined {
  try {
    return loadInventory(dir);
  } catch (err) {
    if (!(err instanceof InventoryError)) throw err;
    if (out.json) out.emit({ valid: false, problems: err.problems });
    else for (const line of err.message.split("\n")) out.error(line);
    return undefined;
  }
}

export function validateCommand(dir: string, out: CommandOutput): number {
  const inventory = loadOrReport(dir, out);
  if (!inventory) return EXIT_INVALID;
  const vms = inventory.networks.reduce((n, net) => n + net.vms.length, 0);
  if (out.json) {
    out.emit({ valid: true, site: inventory.site.name, networks: inventory.networks.length, hosts: inventory.hosts.length, vms, problems: [] });
  } else {
    out.line(`${dir}: valid — site ${inventory.site.name}, ${inventory.networks.length} networks, ${inventory.hosts.length} hosts, ${vms} VMs`);
  }
  return 0;
}
