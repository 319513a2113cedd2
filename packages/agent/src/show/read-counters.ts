import { join } from "node:path";
import { parseOvsState } from "../resources/ovsdb.ts";
import type { Toolbox } from "../tools.ts";
import { INTERFACE_STATS_COLUMNS } from "./parse-counters.ts";

/**
 * The argv of show's counter reads (read-only): the Interface table's
 * statistics columns, and ovs-vswitchd's bond and LACP state over its
 * unixctl socket (ovs-appctl(8)).
 */

/** `ovs-vsctl --format=json --columns=name,statistics,link_state,admin_state,link_resets list Interface`. */
export function ovsStatsArgv(t: Toolbox): string[] {
  return t.ovsVsctl("--format=json", `--columns=${INTERFACE_STATS_COLUMNS.join(",")}`, "list", "Interface");
}

/**
 * `ovs-appctl COMMAND` against this host's ovs-vswitchd. With a private OVS
 * run dir (Toolbox ovsRundir, the lab's layout) its control socket is
 * `<rundir>/ovs-vswitchd.ctl` (ovs-vswitchd `--unixctl=`); otherwise
 * ovs-appctl's default target, ovs-vswitchd of the system run dir.
 */
export function appctlArgv(t: Toolbox, ...command: string[]): string[] {
  const target = t.paths.ovsRundir ? ["-t", join(t.paths.ovsRundir, "ovs-vswitchd.ctl")] : [];
  return ["ovs-appctl", "--timeout=10", ...target, ...command];
}

/**
 * Which bond reads are worth making, from the OVS read (`ovs-vsctl list
 * Bridge/Port/Interface`): bond/show when a Port has several Interfaces,
 * lacp/show when a Port has `lacp` active or passive. A host without either
 * runs neither (and needs no ovs-vswitchd control socket for show).
 */
export function countersReadsOf(ovsStdout: string): { bond: boolean; lacp: boolean } {
  try {
    const ports = [...parseOvsState(ovsStdout).ports.values()];
    return { bond: ports.some((p) => p.interfaceUuids.length > 1), lacp: ports.some((p) => p.lacp === "active" || p.lacp === "passive") };
  } catch {
    return { bond: false, lacp: false };
  }
}
