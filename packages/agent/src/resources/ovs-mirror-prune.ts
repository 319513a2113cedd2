import type { PruneSpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { OWNER_KEY } from "./ovs.ts";
import type { OvsState } from "./ovsdb.ts";
import { MIRROR_PORT_KEY, observeMirrors } from "./ovs-mirror-db.ts";
import { purgeDatapathFlows } from "./ovs-mirror-revalidate.ts";
import type { Changes, ObserveContext, PlanContext } from "./types.ts";

/** Mirror rows and mirror tunnel ports of ours that the assignment no longer names (prune's part for mirrors). */
export interface StaleMirrors {
  /** Our Mirror rows (external_ids:netfleet-owner=<site>) whose name is not kept, with the bridge holding each. */
  rows: { uuid: string; name: string; bridge?: string }[];
  /** Our tunnel ports (external_ids:netfleet-mirror=<site>) not named mr-<kept mirror>. */
  ports: string[];
}

/**
 * What of mirrors prune removes: only when the assignment says which it
 * keeps (`keep.ovsMirrors`); then the Mirror table is read (one ovs-vsctl
 * call) and `ovs` gives the tunnel ports. Undefined when nothing is stale.
 */
export async function observeStaleMirrors(spec: PruneSpec, ctx: ObserveContext, ovs: OvsState): Promise<StaleMirrors | undefined> {
  const keep = spec.keep.ovsMirrors;
  if (keep === undefined) return undefined;
  const rows = (await observeMirrors(ctx))
    .filter((m) => m.externalIds[OWNER_KEY] === ctx.owner && !keep.includes(m.name))
    .map((m) => ({ uuid: m.uuid, name: m.name, ...(m.bridge !== undefined ? { bridge: m.bridge } : {}) }));
  const keptPorts = new Set(keep.map((n) => `mr-${n}`));
  const ports = [...ovs.ports.values()].filter((p) => p.externalIds[MIRROR_PORT_KEY] === ctx.owner && !keptPorts.has(p.name)).map((p) => p.name).sort();
  return rows.length > 0 || ports.length > 0 ? { rows, ports } : undefined;
}

/**
 * One ovs-vsctl transaction removing the stale rows (from their bridge's
 * `mirrors`) and ports, changes recorded; when a row goes, then
 * `ovs-appctl revalidator/purge`: a datapath flow installed while the row
 * existed would go on copying to its output (ovs-mirror-revalidate.ts).
 */
export function pruneMirrorsCommands(stale: StaleMirrors | undefined, changes: Changes, ctx: PlanContext): Command[] {
  if (!stale) return [];
  const args: string[] = [];
  for (const m of stale.rows) {
    changes[`ovs-mirror ${m.name}`] = { old: "present", new: null };
    args.push(...(m.bridge ? ["--", "remove", "Bridge", m.bridge, "mirrors", m.uuid] : ["--", "destroy", "Mirror", m.uuid]));
  }
  for (const p of stale.ports) {
    changes[`port ${p}`] = { old: "present", new: null };
    args.push("--", "--if-exists", "del-port", p);
  }
  if (args.length === 0) return [];
  return [mutate(ctx.tools.ovsVsctl(...args)), ...(stale.rows.length > 0 ? [purgeDatapathFlows(ctx.tools)] : [])];
}
