import type { MirrorTunnel, OvsMirrorSpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { OWNER_KEY } from "./ovs.ts";
import { emptyOvsState, observeOvs, type OvsState } from "./ovsdb.ts";
import { MIRROR_PORT_KEY, observeMirrors, type MirrorRow } from "./ovs-mirror-db.ts";
import { purgeDatapathFlows } from "./ovs-mirror-revalidate.ts";
import type { Changes, ResourceHandler, ResourcePlan } from "./types.ts";

/**
 * Port mirroring through the Open vSwitch Mirror table
 * (ovs-vswitchd.conf.db(5), table Mirror; ovs-vsctl(8) "Port Mirroring"):
 * one Mirror row of ours (`external_ids:netfleet-owner=<site>`), named as
 * the inventory's mirror, on the network's bridge. VM ports are found live
 * by libvirt's `external_ids:attached-mac`, as vm-port-policy finds them:
 * sources are select_src_port (what the VM sends: egress) and
 * select_dst_port (what it receives: ingress), or select_all for a whole
 * network; the output is the capture VM's port, or a GRE/ERSPAN port
 * `mr-<name>` this resource creates (marked `netfleet-mirror=<site>`). The
 * row exists only while its output and a source are on this host: a capture
 * VM elsewhere, or no source VM here, means no row (a VM's lifecycle, not
 * drift). A Mirror row of that name without our mark is never touched.
 * A plan that creates, changes or removes a row ends with
 * `ovs-appctl revalidator/purge` (ovs-mirror-revalidate.ts): OVS applies a
 * Mirror change to new datapath flows only.
 */
export interface MirrorObservation {
  ovs: OvsState;
  mirrors: MirrorRow[];
}

/** What the row should be, by port names; undefined: no row on this host (`why` says why). */
interface WantedRow {
  selectAll: boolean;
  src: string[];
  dst: string[];
  output: string;
}

/** The ports of `bridge` whose interface carries libvirt's attached-mac, by that MAC (lowercase). */
function vmPortsByMac(ovs: OvsState, bridge: string): Map<string, string> {
  const out = new Map<string, string>();
  const b = ovs.bridges.get(bridge);
  if (!b) return out;
  const ifaces = new Map([...ovs.interfaces.values()].map((i) => [i.uuid, i]));
  const here = new Set(b.portUuids);
  for (const p of ovs.ports.values()) {
    if (!here.has(p.uuid)) continue;
    for (const u of p.interfaceUuids) {
      const mac = ifaces.get(u)?.externalIds["attached-mac"]?.toLowerCase();
      if (mac) out.set(mac, p.name);
    }
  }
  return out;
}

/** The Interface options a tunnel port carries (ovs-vswitchd.conf.db(5) Interface options for gre / erspan). */
export function tunnelOptions(t: MirrorTunnel): Record<string, string> {
  const o: Record<string, string> = { remote_ip: t.remoteIp };
  if (t.key !== undefined) o.key = String(t.key);
  if (t.erspanVersion !== undefined) o.erspan_ver = String(t.erspanVersion);
  if (t.erspanIndex !== undefined) o.erspan_idx = String(t.erspanIndex);
  if (t.erspanDir !== undefined) o.erspan_dir = String(t.erspanDir);
  if (t.erspanHwid !== undefined) o.erspan_hwid = String(t.erspanHwid);
  return o;
}

const optionArgs = (o: Record<string, string>) => Object.entries(o).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `options:${k}=${v}`);

function wanted(spec: OvsMirrorSpec, ovs: OvsState): { row?: WantedRow; why?: string } {
  if (!ovs.bridges.has(spec.bridge)) return { why: `bridge ${spec.bridge} is not on this host` };
  const byMac = vmPortsByMac(ovs, spec.bridge);
  let output: string;
  if ("vmMac" in spec.output) {
    const port = byMac.get(spec.output.vmMac.toLowerCase());
    if (port === undefined) return { why: `the capture VM ${spec.output.vmMac} has no port on ${spec.bridge} here` };
    output = port;
  } else {
    output = spec.output.tunnel.port;
  }
  if (spec.sourceMacs === undefined) return { row: { selectAll: true, src: [], dst: [], output } };
  const sources = spec.sourceMacs.map((m) => byMac.get(m.toLowerCase())).filter((p): p is string => p !== undefined && p !== output).sort();
  if (sources.length === 0) return { why: `no source VM has a port on ${spec.bridge} here` };
  return {
    row: {
      selectAll: false,
      src: spec.direction === "ingress" ? [] : sources,
      dst: spec.direction === "egress" ? [] : sources,
      output,
    },
  };
}

/** The row as OVS has it, by port names (a port reference OVS no longer resolves shows as its UUID). */
function haveRow(row: MirrorRow, ovs: OvsState): WantedRow & { bridge?: string; outputVlan?: number } {
  const names = new Map([...ovs.ports.values()].map((p) => [p.uuid, p.name]));
  const name = (u: string) => names.get(u) ?? u;
  return {
    selectAll: row.selectAll,
    src: row.selectSrcPorts.map(name).sort(),
    dst: row.selectDstPorts.map(name).sort(),
    output: row.outputPort === undefined ? "" : name(row.outputPort),
    ...(row.bridge !== undefined ? { bridge: row.bridge } : {}),
    ...(row.outputVlan !== undefined ? { outputVlan: row.outputVlan } : {}),
  };
}

/** `--id=@p<i> get Port NAME` for each port named, and the column values in @-references. */
function portRefs(want: WantedRow): { args: string[]; columns: string[] } {
  const ports = [...new Set([want.output, ...want.src, ...want.dst])];
  const ref = (p: string) => `@p${ports.indexOf(p)}`;
  const set = (list: string[]) => (list.length === 0 ? "[]" : list.map(ref).join(","));
  return {
    args: ports.flatMap((p, i) => ["--", `--id=@p${i}`, "get", "Port", p]),
    columns: [`select_all=${want.selectAll}`, `select_src_port=${set(want.src)}`, `select_dst_port=${set(want.dst)}`, `output_port=${ref(want.output)}`],
  };
}

/** The tunnel port's part of the plan: created, or its type/options set back; blocked when the name is not ours. */
function tunnelPlan(spec: OvsMirrorSpec, ovs: OvsState, owner: string, changes: Changes, args: string[]): string | undefined {
  if (!("tunnel" in spec.output)) return undefined;
  const t = spec.output.tunnel;
  const port = ovs.ports.get(t.port);
  const options = tunnelOptions(t);
  if (!port) {
    changes[`port ${t.port}`] = { old: null, new: `${t.type} ${JSON.stringify(options)}` };
    args.push("--", "add-port", spec.bridge, t.port, "--", "set", "Interface", t.port, `type=${t.type}`, ...optionArgs(options), "--", "set", "Port", t.port, `external_ids:${MIRROR_PORT_KEY}=${owner}`);
    return undefined;
  }
  if (port.externalIds[MIRROR_PORT_KEY] !== owner) return `port ${t.port} exists and is not a mirror port of netfleet; refusing to use it as the output of mirror ${spec.name}`;
  if (port.bridge !== spec.bridge) {
    changes[`port ${t.port}`] = { old: { bridge: port.bridge }, new: { bridge: spec.bridge } };
    args.push("--", "--if-exists", "del-port", t.port, "--", "add-port", spec.bridge, t.port, "--", "set", "Interface", t.port, `type=${t.type}`, ...optionArgs(options), "--", "set", "Port", t.port, `external_ids:${MIRROR_PORT_KEY}=${owner}`);
    return undefined;
  }
  const iface = ovs.interfaces.get(t.port);
  const same = iface?.type === t.type && JSON.stringify(Object.entries(iface.options).sort()) === JSON.stringify(Object.entries(options).sort());
  if (!same) {
    changes[`port ${t.port}`] = { old: `${iface?.type} ${JSON.stringify(iface?.options ?? {})}`, new: `${t.type} ${JSON.stringify(options)}` };
    args.push("--", "clear", "Interface", t.port, "options", "--", "set", "Interface", t.port, `type=${t.type}`, ...optionArgs(options));
  }
  return undefined;
}

/** A stale tunnel port of this mirror (ours, named mr-<name>) when the output is no longer a tunnel. */
function staleTunnel(spec: OvsMirrorSpec, ovs: OvsState, owner: string): string | undefined {
  const name = `mr-${spec.name}`;
  if ("tunnel" in spec.output) return undefined;
  const port = ovs.ports.get(name);
  return port?.externalIds[MIRROR_PORT_KEY] === owner ? name : undefined;
}

export const ovsMirror: ResourceHandler<OvsMirrorSpec, MirrorObservation> = {
  kind: "ovs-mirror",
  async observe(_spec, ctx) {
    const [ovs, mirrors] = await Promise.all([observeOvs(ctx), observeMirrors(ctx)]);
    return { ovs, mirrors };
  },
  absent: () => ({ ovs: emptyOvsState(), mirrors: [] }),
  // The row of this name and the ports it selects or could select, by name: another bridge's taps, counters and
  // ofport numbers are no change to this plan.
  stable: (o, spec) => {
    const row = o.mirrors.find((m) => m.name === spec.name);
    const byMac = [...vmPortsByMac(o.ovs, spec.bridge)].sort();
    const tunnel = o.ovs.interfaces.get("tunnel" in spec.output ? spec.output.tunnel.port : `mr-${spec.name}`);
    return { row: row ? { ...haveRow(row, o.ovs), externalIds: row.externalIds } : null, byMac, tunnel: tunnel ? { type: tunnel.type, options: tunnel.options } : null, bridge: o.ovs.bridges.has(spec.bridge) };
  },
  plan(spec, o, ctx): ResourcePlan {
    const owner = ctx.owner;
    const rows = o.mirrors.filter((m) => m.name === spec.name);
    const foreign = rows.find((m) => m.externalIds[OWNER_KEY] !== owner);
    if (foreign) {
      return { changes: {}, commands: [], blocked: `mirror ${spec.name} exists${foreign.bridge ? ` on ${foreign.bridge}` : ""} and is not managed by netfleet; to hand it over run: ovs-vsctl set Mirror ${foreign.uuid} external_ids:${OWNER_KEY}=${owner}` };
    }
    const changes: Changes = {};
    const args: string[] = [];
    const { row: want, why } = wanted(spec, o.ovs);
    // One row of ours per name: extra ones (a half-done earlier pass) go.
    const [have, ...extra] = rows;
    /** A Mirror row is created, changed or removed: the datapath flows are purged after (ovs-mirror-revalidate.ts). */
    let rowsChanged = extra.length > 0;
    for (const m of extra) {
      changes[`mirror ${spec.name} ${m.uuid}`] = { old: "present", new: null };
      args.push(...(m.bridge ? ["--", "remove", "Bridge", m.bridge, "mirrors", m.uuid] : ["--", "destroy", "Mirror", m.uuid]));
    }
    const stale = staleTunnel(spec, o.ovs, owner);
    if (stale) {
      changes[`port ${stale}`] = { old: "present", new: null };
      args.push("--", "--if-exists", "del-port", stale);
    }
    let lifecycle = false;
    if (!want) {
      if (have) {
        changes[`mirror ${spec.name}`] = { old: haveRow(have, o.ovs), new: null };
        args.push(...(have.bridge ? ["--", "remove", "Bridge", have.bridge, "mirrors", have.uuid] : ["--", "destroy", "Mirror", have.uuid]));
        lifecycle = true;
        rowsChanged = true;
      }
    } else {
      const blocked = tunnelPlan(spec, o.ovs, owner, changes, args);
      if (blocked) return { changes: {}, commands: [], blocked };
      const refs = portRefs(want);
      const current = have ? haveRow(have, o.ovs) : undefined;
      if (!have || current!.bridge !== spec.bridge) {
        if (have) args.push(...(have.bridge ? ["--", "remove", "Bridge", have.bridge, "mirrors", have.uuid] : ["--", "destroy", "Mirror", have.uuid]));
        changes[`mirror ${spec.name}`] = { old: current ?? null, new: { bridge: spec.bridge, ...want } };
        args.push(...refs.args, "--", "--id=@m", "create", "Mirror", `name=${spec.name}`, ...refs.columns, `external_ids:${OWNER_KEY}=${owner}`, "--", "add", "Bridge", spec.bridge, "mirrors", "@m");
        rowsChanged = true;
      } else {
        const drift = (["selectAll", "src", "dst", "output"] as const).filter((k) => JSON.stringify(current![k]) !== JSON.stringify(want[k]));
        if (current!.outputVlan !== undefined) changes[`mirror ${spec.name} outputVlan`] = { old: current!.outputVlan, new: null };
        for (const k of drift) changes[`mirror ${spec.name} ${k}`] = { old: current![k], new: want[k] };
        if (drift.length > 0 || current!.outputVlan !== undefined) {
          args.push(...refs.args, "--", "set", "Mirror", have.uuid, ...refs.columns);
          if (current!.outputVlan !== undefined) args.push("--", "clear", "Mirror", have.uuid, "output_vlan");
          rowsChanged = true;
        }
      }
    }
    const commands: Command[] = args.length > 0 ? [mutate(ctx.tools.ovsVsctl(...args))] : [];
    if (rowsChanged) commands.push(purgeDatapathFlows(ctx.tools));
    const plan: ResourcePlan = { changes, commands };
    if (lifecycle && Object.keys(changes).length === 1) plan.lifecycle = true;
    if (!want) plan.comment = `no mirror here: ${why}`;
    return plan;
  },
};
