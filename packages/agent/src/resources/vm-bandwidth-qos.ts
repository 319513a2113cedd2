import { ParseError, type VmPortPolicySpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { OWNER_KEY } from "./ovs.ts";
import type { ObserveContext, PlanContext } from "./types.ts";

/**
 * What a VM receives (its `bandwidth.ingress`), shaped on its OVS port by a
 * `linux-htb` QoS (ovs-vswitchd.conf.db(5), QoS and Queue tables; tc-htb(8)):
 * the Port's `qos` names a QoS row `type=linux-htb`,
 * `other_config:max-rate=<ROOT_HEADROOM x bit/s>`, whose queue 0 (the
 * default class, 1:1, every frame that no `set_queue` sent elsewhere) has
 * `other_config:max-rate=<bit/s>` and `other_config:burst=<bits>`: the
 * queue shapes. The root class (1:fffe) only groups the port's one queue;
 * OVS gives it a one-frame burst (1500 b), which under coarse timers caps
 * it far below its rate (measured in the kernel tier under emulation: a
 * root at 2 Mbit/s passed 1.1-1.4 Mbit/s, at 10 Mbit/s 2.3, while the
 * queue's own burst is the VM's), so its rate is set well above the
 * queue's, never to be the limit. OVS then
 * keeps an htb qdisc on the port's device; frames OVS sends to the VM leave
 * through it, on the userspace datapath (packet socket) as on the kernel's.
 * Measured on the lab's userspace datapath, OVS 3.1, iperf3 TCP: 50 Mbit/s
 * → 46.5-46.6 Mbit/s of goodput; changed in place to 20 Mbit/s → 18.9.
 *
 * Ours: QoS and Queue rows carry `external_ids:netfleet-owner=<site>`,
 * `netfleet-bridge=<bridge>` and `netfleet-mac=<VM MAC>`. Both tables are
 * root tables (rows live on when their Port goes), so when a VM's port goes
 * its rows are left behind: the next pass of its bridge destroys every row
 * of ours marked with that bridge that no Port (or QoS) references. A QoS
 * on a VM port that is not ours is never touched (the plan says so).
 */

/** One QoS row, with its queue 0. */
export interface QosRow {
  uuid: string;
  type: string;
  otherConfig: Record<string, string>;
  externalIds: Record<string, string>;
  /** Queue number → Queue uuid. */
  queues: Record<string, string>;
}

/** One Queue row. */
export interface QueueRow {
  uuid: string;
  otherConfig: Record<string, string>;
  externalIds: Record<string, string>;
}

/** The Port qos column and the QoS and Queue tables. */
export interface QosObservation {
  /** Port name → QoS uuid, for ports that have one. */
  portQos: Record<string, string>;
  qos: QosRow[];
  queues: QueueRow[];
}

/** The one read: Port (name, qos), QoS and Queue, as OVSDB JSON tables, one per line. */
export function qosObserveArgv(ctx: PlanContext): string[] {
  return ctx.tools.ovsVsctl(
    "--format=json",
    "--",
    "--columns=_uuid,name,qos",
    "list",
    "Port",
    "--",
    "--columns=_uuid,type,other_config,queues,external_ids",
    "list",
    "QoS",
    "--",
    "--columns=_uuid,other_config,external_ids",
    "list",
    "Queue",
  );
}

type Value = unknown;
const bad = (what: string, v: Value) => new ParseError("ovs-vsctl", `${what}: unexpected OVSDB value ${JSON.stringify(v)}`);
/** OVSDB JSON (RFC 7047 §5.1): `["uuid", u]`, a bare atom, `["set", [...]]`, `["map", [[k, v], ...]]`. */
function atomText(v: Value): string {
  if (Array.isArray(v) && v[0] === "uuid") return String(v[1]);
  if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") return String(v);
  throw bad("atom", v);
}
function setItems(v: Value): Value[] {
  return Array.isArray(v) && v[0] === "set" ? (v[1] as Value[]) : [v];
}
function mapEntries(v: Value): Record<string, string> {
  if (!Array.isArray(v) || v[0] !== "map" || !Array.isArray(v[1])) throw bad("map", v);
  return Object.fromEntries((v[1] as [Value, Value][]).map(([k, x]) => [atomText(k), atomText(x)]));
}
function table(line: string | undefined, columns: string[]): Record<string, Value>[] {
  let t: { headings?: unknown; data?: unknown };
  try {
    t = JSON.parse(line ?? "") as typeof t;
  } catch (err) {
    throw new ParseError("ovs-vsctl", `expected 3 OVSDB tables (Port, QoS, Queue), one per line (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(t.headings) || !Array.isArray(t.data)) throw new ParseError("ovs-vsctl", "an OVSDB table has no headings/data");
  const headings = t.headings as string[];
  for (const c of columns) if (!headings.includes(c)) throw new ParseError("ovs-vsctl", `column ${c} missing (got ${headings.join(",")})`);
  return (t.data as Value[][]).map((row) => Object.fromEntries(headings.map((h, i) => [h, row[i]])));
}

/** Parses qosObserveArgv's output. Throws ParseError on anything else. */
export function parseQos(stdout: string): QosObservation {
  const lines = stdout.split("\n").filter((l) => l.trim());
  if (lines.length !== 3) throw new ParseError("ovs-vsctl", `expected 3 OVSDB tables (Port, QoS, Queue), got ${lines.length}`);
  const portQos: Record<string, string> = {};
  for (const r of table(lines[0], ["name", "qos"])) {
    const q = setItems(r.qos);
    if (q.length === 1) portQos[atomText(r.name)] = atomText(q[0]);
  }
  const qos = table(lines[1], ["_uuid", "type", "other_config", "queues", "external_ids"]).map((r) => ({
    uuid: atomText(r._uuid),
    type: atomText(r.type),
    otherConfig: mapEntries(r.other_config),
    externalIds: mapEntries(r.external_ids),
    queues: mapEntries(r.queues),
  }));
  const queues = table(lines[2], ["_uuid", "other_config", "external_ids"]).map((r) => ({
    uuid: atomText(r._uuid),
    otherConfig: mapEntries(r.other_config),
    externalIds: mapEntries(r.external_ids),
  }));
  return { portQos, qos, queues };
}

/** Reads the Port qos column and the QoS and Queue tables (memoised per pass). */
export async function observeQos(ctx: ObserveContext): Promise<QosObservation> {
  return parseQos((await ctx.read(qosObserveArgv(ctx))).stdout);
}

/** A QoS with nothing: a fresh host. */
export const emptyQos = (): QosObservation => ({ portQos: {}, qos: [], queues: [] });

/** What converging the QoS of one bridge's VM ports takes. */
export interface QosPlan {
  /** At most one ovs-vsctl transaction. */
  commands: Command[];
  change?: { old: string[]; new: string[] };
  /** VM ports whose limit changed or went while the port stayed (not a VM's start or stop). */
  touchedPorts: string[];
  /** Notes: a VM port with a QoS that is not ours. */
  notes: string[];
}

const MARK = { bridge: "netfleet-bridge", mac: "netfleet-mac" } as const;

/** The QoS (root class) rate as a multiple of the queue's: never the limit (see the top of this file). */
export const ROOT_HEADROOM = 10;
/** The root class rate for a queue of `rate` bit/s: ROOT_HEADROOM times it, at most 10^12 (BANDWIDTH_MAX). */
export function rootRate(rate: number): number {
  return Math.min(rate * ROOT_HEADROOM, 1e12);
}

function describe(port: string, rate?: string, burst?: string): string {
  return `${port}: linux-htb max-rate=${rate ?? "?"} burst=${burst ?? "?"}`;
}

/**
 * Converges the ingress limits of the VM ports of one bridge: creates,
 * updates in place or removes our QoS/Queue rows, and destroys our rows of
 * this bridge that nothing references any more (a VM port that went).
 */
export function planQos(spec: VmPortPolicySpec, vmPorts: { port: string; mac: string }[], obs: QosObservation, ctx: PlanContext): QosPlan {
  const plan: QosPlan = { commands: [], touchedPorts: [], notes: [] };
  const owner = ctx.owner;
  const qosById = new Map(obs.qos.map((q) => [q.uuid, q]));
  const queueById = new Map(obs.queues.map((q) => [q.uuid, q]));
  const ours = (ids: Record<string, string>) => ids[OWNER_KEY] === owner && ids[MARK.bridge] === spec.name;
  const args: string[] = [];
  const old: string[] = [];
  const added: string[] = [];
  const destroyed = new Set<string>();
  const marks = (mac: string) => [`external_ids:${OWNER_KEY}=${owner}`, `external_ids:${MARK.bridge}=${spec.name}`, `external_ids:${MARK.mac}=${mac}`];
  const destroyQos = (q: QosRow) => {
    args.push("--", "destroy", "QoS", q.uuid);
    destroyed.add(q.uuid);
    for (const u of Object.values(q.queues)) if (queueById.has(u) && !destroyed.has(u)) (args.push("--", "destroy", "Queue", u), destroyed.add(u));
  };
  for (const [i, p] of vmPorts.entries()) {
    const ingress = spec.vms.find((v) => v.mac.toLowerCase() === p.mac)?.bandwidth?.ingress;
    const current = obs.portQos[p.port] === undefined ? undefined : qosById.get(obs.portQos[p.port]!);
    const rate = ingress ? String(ingress.rate) : undefined;
    const root = ingress ? String(rootRate(ingress.rate)) : undefined;
    const burst = ingress ? String(ingress.burst) : undefined;
    if (current && !ours(current.externalIds)) {
      if (ingress) plan.notes.push(`${p.port} has a QoS not set by netfleet (${current.type}); its ingress limit was not applied`);
      continue;
    }
    const queue = current?.queues["0"] === undefined ? undefined : queueById.get(current.queues["0"]);
    const haveText = current ? describe(p.port, queue?.otherConfig["max-rate"], queue?.otherConfig.burst) : undefined;
    if (!ingress) {
      if (current) {
        args.push("--", "clear", "Port", p.port, "qos");
        destroyQos(current);
        old.push(haveText!);
        plan.touchedPorts.push(p.port);
      }
      continue;
    }
    const matches =
      current !== undefined && queue !== undefined && current.type === "linux-htb" && current.otherConfig["max-rate"] === root && queue.otherConfig["max-rate"] === rate && queue.otherConfig.burst === burst && current.externalIds[MARK.mac] === p.mac && Object.keys(current.queues).length === 1;
    if (matches) continue;
    if (current && queue && current.type === "linux-htb" && Object.keys(current.queues).length === 1) {
      // In place: OVS changes the htb classes without replacing the qdisc.
      args.push("--", "set", "QoS", current.uuid, `other_config:max-rate=${root}`, ...marks(p.mac));
      args.push("--", "set", "Queue", queue.uuid, `other_config:max-rate=${rate}`, `other_config:burst=${burst}`, ...marks(p.mac));
      plan.touchedPorts.push(p.port);
    } else {
      if (current) (destroyQos(current), plan.touchedPorts.push(p.port));
      args.push("--", "set", "Port", p.port, `qos=@q${i}`);
      args.push("--", `--id=@q${i}`, "create", "QoS", "type=linux-htb", `other_config:max-rate=${root}`, ...marks(p.mac), `queues:0=@u${i}`);
      args.push("--", `--id=@u${i}`, "create", "Queue", `other_config:max-rate=${rate}`, `other_config:burst=${burst}`, ...marks(p.mac));
    }
    if (haveText) old.push(haveText);
    added.push(describe(p.port, rate, burst));
  }
  // Rows of ours for this bridge that nothing references: their port went.
  const referenced = new Set(Object.values(obs.portQos));
  for (const q of obs.qos) {
    if (!ours(q.externalIds) || referenced.has(q.uuid) || destroyed.has(q.uuid)) continue;
    destroyQos(q);
    old.push(`orphan QoS ${q.uuid} (${q.externalIds[MARK.mac] ?? "?"})`);
  }
  const queued = new Set(obs.qos.filter((q) => !destroyed.has(q.uuid)).flatMap((q) => Object.values(q.queues)));
  for (const u of obs.queues) {
    if (!ours(u.externalIds) || queued.has(u.uuid) || destroyed.has(u.uuid)) continue;
    args.push("--", "destroy", "Queue", u.uuid);
    destroyed.add(u.uuid);
    old.push(`orphan Queue ${u.uuid} (${u.externalIds[MARK.mac] ?? "?"})`);
  }
  if (args.length > 0) {
    plan.commands.push(mutate(ctx.tools.ovsVsctl(...args)));
    plan.change = { old, new: added };
  }
  return plan;
}

/**
 * What of the QoS observation one bridge's plan depends on (for the
 * observed-state hash): its VM ports' qos, the QoS and Queue rows they name
 * and the rows marked with this bridge. Another bridge's QoS is not its.
 */
export function stableQos(obs: QosObservation, bridge: string, vmPorts: string[]): QosObservation {
  const portQos = Object.fromEntries(vmPorts.filter((p) => obs.portQos[p] !== undefined).map((p) => [p, obs.portQos[p]!]));
  const named = new Set(Object.values(portQos));
  const qos = obs.qos.filter((q) => named.has(q.uuid) || q.externalIds[MARK.bridge] === bridge);
  const queued = new Set(qos.flatMap((q) => Object.values(q.queues)));
  return { portQos, qos, queues: obs.queues.filter((u) => queued.has(u.uuid) || u.externalIds[MARK.bridge] === bridge) };
}
