import { ParseError } from "@netfleet/shared";
import { atom, mapOf, optional, setOf, tableRows as rows, type OvsdbTable as Table, type OvsdbValue } from "./ovsdb-json.ts";
import type { ObserveContext, PlanContext } from "./types.ts";

/**
 * The OVS database as `ovs-vsctl --format=json list` prints it (OVSDB JSON
 * atoms, sets and maps, ovsdb(7)), reduced to the Bridge, Port and
 * Interface columns the resources look at. Pure parser; throws ParseError.
 */

/** The OVS database as far as we manage it, from one `ovs-vsctl --format=json` call. */
export interface OvsState {
  bridges: Map<string, OvsBridge>;
  ports: Map<string, OvsPort>;
  interfaces: Map<string, OvsInterface>;
}

/** A Bridge row. */
export interface OvsBridge {
  uuid: string;
  name: string;
  datapath: string;
  /** `secure` or `standalone`; absent when unset (OVS then behaves as standalone). */
  failMode?: string;
  portUuids: string[];
  externalIds: Record<string, string>;
}

/** A Port row, with the bridge it is on (from the Bridge's ports). */
export interface OvsPort {
  uuid: string;
  name: string;
  bridge?: string;
  interfaceUuids: string[];
  tag?: number;
  trunks: number[];
  bondMode?: string;
  /**
   * The Port `lacp` column (ovs-vswitchd.conf.db(5)): `active`, `passive` or
   * `off`; an empty column reads as `off` (OVS's default). Undefined when the
   * output did not ask for the column (captures older than it).
   */
  lacp?: string;
  externalIds: Record<string, string>;
}

/** An Interface row. */
export interface OvsInterface {
  uuid: string;
  name: string;
  type: string;
  options: Record<string, string>;
  externalIds: Record<string, string>;
  ofport?: number;
  mac?: string;
  /** What was asked of OVS (`mtu_request`), and the MTU the device has (`mtu`; none for a patch port). */
  mtuRequest?: number;
  mtu?: number;
}

/** The one read-only `ovs-vsctl` call: the Bridge, Port and Interface tables, the columns we look at. */
export function ovsObserveArgv(ctx: PlanContext): string[] {
  return ctx.tools.ovsVsctl(
    "--format=json",
    "--",
    "--columns=_uuid,name,datapath_type,fail_mode,ports,external_ids",
    "list",
    "Bridge",
    "--",
    "--columns=_uuid,name,interfaces,tag,trunks,bond_mode,lacp,vlan_mode,external_ids",
    "list",
    "Port",
    "--",
    "--columns=_uuid,name,type,options,external_ids,ofport,mac_in_use,mtu_request,mtu",
    "list",
    "Interface",
  );
}


/** Parses the three tables of ovsObserveArgv's output. Throws ParseError on anything else. */
export function parseOvsState(stdout: string): OvsState {
  const tables: Table[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.trim()) continue;
    try {
      const t = JSON.parse(line) as Table;
      if (!Array.isArray(t.headings) || !Array.isArray(t.data)) throw new Error("no headings/data");
      tables.push(t);
    } catch (err) {
      throw new ParseError("ovs-vsctl", `line ${tables.length + 1} is not an OVSDB table (${(err as Error).message})`, { cause: err });
    }
  }
  if (tables.length !== 3) throw new ParseError("ovs-vsctl", `expected 3 tables (Bridge, Port, Interface), got ${tables.length}`);
  const [bt, pt, it] = tables as [Table, Table, Table];

  const bridges = new Map<string, OvsBridge>();
  const portBridge = new Map<string, string>();
  for (const r of rows(bt, ["_uuid", "name", "datapath_type", "ports", "external_ids"])) {
    const b: OvsBridge = {
      uuid: String(atom(r._uuid)),
      name: String(r.name),
      datapath: String(r.datapath_type || "system"),
      portUuids: setOf(r.ports).map((p) => String(atom(p))),
      externalIds: mapOf(r.external_ids),
    };
    const failMode = r.fail_mode === undefined ? undefined : optional(r.fail_mode);
    if (failMode !== undefined) b.failMode = String(failMode);
    bridges.set(b.name, b);
    for (const p of b.portUuids) portBridge.set(p, b.name);
  }
  const ports = new Map<string, OvsPort>();
  for (const r of rows(pt, ["_uuid", "name", "interfaces", "tag", "trunks", "bond_mode", "external_ids"])) {
    const uuid = String(atom(r._uuid));
    const tag = optional(r.tag);
    const bondMode = optional(r.bond_mode);
    const p: OvsPort = {
      uuid,
      name: String(r.name),
      interfaceUuids: setOf(r.interfaces).map((i) => String(atom(i))),
      trunks: setOf(r.trunks).map((t) => Number(atom(t))).sort((a, b) => a - b),
      externalIds: mapOf(r.external_ids),
    };
    const bridge = portBridge.get(uuid);
    if (bridge !== undefined) p.bridge = bridge;
    if (tag !== undefined) p.tag = Number(tag);
    if (bondMode !== undefined) p.bondMode = String(bondMode);
    if (r.lacp !== undefined) p.lacp = String(optional(r.lacp) ?? "off");
    ports.set(p.name, p);
  }
  const interfaces = new Map<string, OvsInterface>();
  for (const r of rows(it, ["_uuid", "name", "type", "options", "external_ids"])) {
    const ofport = optional(r.ofport);
    const mac = optional(r.mac_in_use);
    const i: OvsInterface = {
      uuid: String(atom(r._uuid)),
      name: String(r.name),
      type: String(r.type || "system"),
      options: mapOf(r.options),
      externalIds: mapOf(r.external_ids),
    };
    if (ofport !== undefined) i.ofport = Number(ofport);
    if (mac !== undefined) i.mac = String(mac);
    // Older captures asked for neither column: then both stay unknown.
    const mtuRequest = r.mtu_request === undefined ? undefined : optional(r.mtu_request);
    const mtu = r.mtu === undefined ? undefined : optional(r.mtu);
    if (mtuRequest !== undefined) i.mtuRequest = Number(mtuRequest);
    if (mtu !== undefined) i.mtu = Number(mtu);
    interfaces.set(i.name, i);
  }
  return { bridges, ports, interfaces };
}

/** An OVS database with no bridge, port or interface (a fresh install). */
export const emptyOvsState = (): OvsState => ({ bridges: new Map(), ports: new Map(), interfaces: new Map() });

/** The OVS database, read once per pass (memoised by the engine). */
export async function observeOvs(ctx: ObserveContext): Promise<OvsState> {
  return parseOvsState((await ctx.read(ovsObserveArgv(ctx))).stdout);
}
