import type { IpfixExport, OvsSamplingSpec, PruneSpec, SflowExport } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { OWNER_KEY } from "./ovs.ts";
import { emptySamplingState, observeSampling, type IpfixRow, type SamplingState, type SflowRow } from "./ovs-sampling-db.ts";
import type { Changes, ObserveContext, PlanContext, ResourceHandler, ResourcePlan } from "./types.ts";

/**
 * Packet sampling of one OVS bridge: an sFlow row and/or an IPFIX row
 * (ovs-vswitchd.conf.db(5), tables sFlow and IPFIX) marked
 * `external_ids:netfleet-owner=<site>`, referenced from the bridge's `sflow`
 * / `ipfix` column. Created in one transaction with the reference
 * (ovs-vsctl(8) "sFlow" and "IPFIX" examples: `--id=@s create sFlow ... --
 * set Bridge br0 sflow=@s`); a drifted column of our row is set by uuid;
 * a row no longer asked for is dereferenced (`clear Bridge br0 sflow`),
 * which deletes it: neither table is a root table, OVSDB garbage-collects
 * an unreferenced row (__fixtures__/ovs/SAMPLING.md shows it). A row we did
 * not create is never changed: the plan is blocked, naming the command that
 * hands it over.
 */

type Proto = "sflow" | "ipfix";
const TABLE: Record<Proto, string> = { sflow: "sFlow", ipfix: "IPFIX" };

/** ovs-vsctl's set syntax for `targets` (a set of strings with `:`, so quoted). */
const targetsValue = (targets: readonly string[]) => `[${[...targets].sort().map((t) => `"${t}"`).join(",")}]`;

/** The columns a spec asks of its row: ovs-vsctl `column=value` text by column, and the columns to clear. */
function wantedColumns(proto: Proto, want: SflowExport | IpfixExport): { set: Record<string, string>; clear: string[] } {
  if (proto === "sflow") {
    const s = want as SflowExport;
    const set: Record<string, string> = { targets: targetsValue(s.targets), sampling: String(s.sampling), polling: String(s.polling), header: String(s.header) };
    if (s.agent !== undefined) set.agent = s.agent;
    return { set, clear: s.agent === undefined ? ["agent"] : [] };
  }
  const i = want as IpfixExport;
  return { set: { targets: targetsValue(i.targets), sampling: String(i.sampling), cache_active_timeout: String(i.cacheActiveTimeout), cache_max_flows: String(i.cacheMaxFlows) }, clear: [] };
}

/** The same columns of a row as it is, in the same text (undefined: the column is empty). */
function haveColumns(proto: Proto, row: SflowRow | IpfixRow): Record<string, string | undefined> {
  const str = (n: number | undefined) => (n === undefined ? undefined : String(n));
  if (proto === "sflow") {
    const s = row as SflowRow;
    return { targets: targetsValue(s.targets), sampling: str(s.sampling), polling: str(s.polling), header: str(s.header), agent: s.agent };
  }
  const i = row as IpfixRow;
  return { targets: targetsValue(i.targets), sampling: str(i.sampling), cache_active_timeout: str(i.cacheActiveTimeout), cache_max_flows: str(i.cacheMaxFlows) };
}

/** One line describing a row, for changes: `targets=... sampling=...`. */
function describe(columns: Record<string, string | undefined>): string {
  return Object.entries(columns).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(" ");
}

function rowOf(state: SamplingState, proto: Proto, uuid: string | undefined): SflowRow | IpfixRow | undefined {
  return uuid === undefined ? undefined : state[proto].get(uuid);
}

/** The ovs-vsctl arguments and changes that bring one protocol's row of `bridge` to `want` (absent: none of ours). */
function planProto(proto: Proto, bridge: string, want: SflowExport | IpfixExport | undefined, state: SamplingState, owner: string, changes: Changes, args: string[]): string | undefined {
  const uuid = state.bridges.get(bridge)?.[proto];
  const have = rowOf(state, proto, uuid);
  const ours = have?.externalIds[OWNER_KEY] === owner;
  if (!want) {
    if (have && ours) {
      changes[proto] = { old: describe(haveColumns(proto, have)), new: null };
      args.push("--", "clear", "Bridge", bridge, proto);
    }
    return undefined;
  }
  const wanted = wantedColumns(proto, want);
  if (!have) {
    changes[proto] = { old: null, new: describe(wanted.set) };
    const id = `@${proto}`;
    args.push("--", `--id=${id}`, "create", TABLE[proto], ...Object.entries(wanted.set).map(([k, v]) => `${k}=${v}`), `external_ids:${OWNER_KEY}=${owner}`, "--", "set", "Bridge", bridge, `${proto}=${id}`);
    return undefined;
  }
  if (!ours) {
    return `bridge ${bridge}'s ${proto} column references a ${TABLE[proto]} row netfleet did not create (${describe(haveColumns(proto, have))}); nothing was changed. To hand it over run: ovs-vsctl set ${TABLE[proto]} ${have.uuid} external_ids:${OWNER_KEY}=${owner}`;
  }
  const current = haveColumns(proto, have);
  const set = Object.entries(wanted.set).filter(([k, v]) => current[k] !== v);
  const clear = wanted.clear.filter((k) => current[k] !== undefined);
  for (const [k, v] of set) changes[`${proto} ${k}`] = { old: current[k] ?? null, new: v };
  for (const k of clear) changes[`${proto} ${k}`] = { old: current[k], new: null };
  if (set.length > 0) args.push("--", "set", TABLE[proto], have.uuid, ...set.map(([k, v]) => `${k}=${v}`));
  if (clear.length > 0) args.push("--", "clear", TABLE[proto], have.uuid, ...clear);
  return undefined;
}

/** The `ovs-sampling` resource (see the top of this file). */
export const ovsSampling: ResourceHandler<OvsSamplingSpec, SamplingState> = {
  kind: "ovs-sampling",
  observe(_spec, ctx) {
    return observeSampling(ctx);
  },
  absent: emptySamplingState,
  // The bridge, its owner mark and the rows it references; nothing of other bridges.
  stable: (state, spec) => {
    const b = state.bridges.get(spec.name);
    return {
      bridge: b ? { name: b.name, owner: b.externalIds[OWNER_KEY] ?? null } : null,
      sflow: rowOf(state, "sflow", b?.sflow) ?? null,
      ipfix: rowOf(state, "ipfix", b?.ipfix) ?? null,
    };
  },
  plan(spec, state, ctx): ResourcePlan {
    const bridge = state.bridges.get(spec.name);
    if (bridge && bridge.externalIds[OWNER_KEY] !== ctx.owner) {
      return { changes: {}, commands: [], blocked: `bridge ${spec.name} is not managed by netfleet; its sFlow and IPFIX settings are left alone` };
    }
    const changes: Changes = {};
    const args: string[] = [];
    for (const proto of ["sflow", "ipfix"] as const) {
      const blocked = planProto(proto, spec.name, spec[proto], state, ctx.owner, changes, args);
      if (blocked) return { changes: {}, commands: [], blocked };
    }
    return { changes, commands: args.length > 0 ? [mutate(ctx.tools.ovsVsctl(...args))] : [] };
  },
};

/** A kept bridge of ours whose sFlow or IPFIX row of ours is no longer asked for (no ovs-sampling resource names it). */
export interface StaleSampling {
  bridge: string;
  protos: Proto[];
}

/**
 * prune's part: the rows of ours on the kept bridges of ours that have no
 * ovs-sampling resource (`keep.sampling`; absent: none). A bridge prune
 * deletes takes its rows with it, so it is not listed.
 */
export async function staleSampling(spec: PruneSpec, ctx: ObserveContext): Promise<StaleSampling[]> {
  return staleSamplingOf(spec, await observeSampling(ctx), ctx.owner);
}

/** staleSampling on an observation (pure). */
export function staleSamplingOf(spec: PruneSpec, state: SamplingState, owner: string): StaleSampling[] {
  const keep = new Set(spec.keep.sampling ?? []);
  const out: StaleSampling[] = [];
  for (const b of [...state.bridges.values()].sort((x, y) => x.name.localeCompare(y.name))) {
    if (keep.has(b.name) || b.externalIds[OWNER_KEY] !== owner || !spec.keep.ovsBridges.includes(b.name)) continue;
    const protos = (["sflow", "ipfix"] as const).filter((p) => rowOf(state, p, b[p])?.externalIds[OWNER_KEY] === owner);
    if (protos.length > 0) out.push({ bridge: b.name, protos });
  }
  return out;
}

/** The commands (one ovs-vsctl transaction) that clear stale rows; their changes go into `changes`. */
export function pruneSamplingCommands(stale: readonly StaleSampling[] | undefined, changes: Changes, ctx: PlanContext): Command[] {
  const args: string[] = [];
  for (const s of stale ?? []) {
    for (const p of s.protos) {
      changes[`${p} ${s.bridge}`] = { old: "present", new: null };
      args.push("--", "clear", "Bridge", s.bridge, p);
    }
  }
  return args.length > 0 ? [mutate(ctx.tools.ovsVsctl(...args))] : [];
}
