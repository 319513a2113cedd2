import { unifiedDiff } from "@netfleet/shared";
import { flowKey, formatFlow, type Flow } from "./openflow.ts";

/** A VM port as the flow diff names it (vm-port-policy.ts VmPort). */
export interface DiffPort {
  port: string;
  ofport: number;
  mac: string;
}

/**
 * Whose rule a flow is: the VM port it comes in on (`in_port=`), else the
 * one it is addressed to (`dl_dst=` its MAC); undefined for the bridge's
 * own rules (the floor, the uplink, table 1's broadcast and remote
 * entries, copies of other hosts' broadcasts).
 */
function portOf(f: Flow, byOfport: ReadonlyMap<number, DiffPort>, byMac: ReadonlyMap<string, DiffPort>): DiffPort | undefined {
  const field = (name: string) => f.match.find((m) => m.startsWith(`${name}=`))?.slice(name.length + 1);
  const inPort = field("in_port");
  if (inPort !== undefined && byOfport.has(Number(inPort))) return byOfport.get(Number(inPort));
  const dst = field("dl_dst")?.toLowerCase();
  return dst !== undefined ? byMac.get(dst) : undefined;
}

/**
 * One group's rules as text, one a line as `ovs-ofctl add-flow` reads them,
 * by table, then priority (highest first), then text. A live rule whose
 * cookie is not `cookie` (someone else installed it; 0x0 when none was set)
 * says so first: `cookie=0x…,`. Desired rules all carry `cookie`.
 */
function groupText(flows: readonly Flow[], cookie: string, live: boolean): string {
  const line = (f: Flow) => `${live && f.cookie !== cookie ? `cookie=${f.cookie ?? "0x0"},` : ""}${formatFlow(f)}`;
  const sorted = [...flows].sort((a, b) => (a.table ?? 0) - (b.table ?? 0) || b.priority - a.priority || line(a).localeCompare(line(b)));
  return sorted.map((f) => `${line(f)}\n`).join("");
}

/**
 * The unified diff of one VM bridge's OpenFlow rules, live → desired, one
 * diff per VM port (the rules it sends in and those addressed to it),
 * then one for the bridge's own rules; groups that do not differ are left
 * out. `have` are the rules as dump-flows lists them (any cookie), `want`
 * the desired ones (all with `cookie`). "" when nothing differs.
 */
export function flowsDiff(bridge: string, ports: readonly DiffPort[], have: readonly Flow[], want: readonly Flow[], cookie: string): string {
  const byOfport = new Map(ports.map((p) => [p.ofport, p]));
  const byMac = new Map(ports.map((p) => [p.mac.toLowerCase(), p]));
  const split = (flows: readonly Flow[]) => {
    const groups = new Map<string, Flow[]>();
    for (const f of flows) {
      const key = portOf(f, byOfport, byMac)?.port ?? "";
      groups.set(key, [...(groups.get(key) ?? []), f]);
    }
    return groups;
  };
  // A desired rule that is live is shown with its match in the order ovs-ofctl printed it (OVS has its
  // own field order), so that only rules that differ show as lines that differ.
  const liveMatch = new Map(have.map((f) => [flowKey(f), f.match]));
  const a = split(have);
  const b = split(want.map((f) => ({ ...f, match: liveMatch.get(flowKey(f)) ?? f.match })));
  const label = (p: DiffPort | undefined) => (p ? `${bridge} port ${p.port} (ofport ${p.ofport}, ${p.mac})` : `${bridge} (floor, uplink, forwarding)`);
  const order = [...ports].sort((x, y) => x.ofport - y.ofport).map((p) => p.port);
  let out = "";
  for (const key of [...order, ""]) {
    const p = key === "" ? undefined : ports.find((x) => x.port === key);
    out += unifiedDiff(groupText(a.get(key) ?? [], cookie, true), groupText(b.get(key) ?? [], cookie, false), { before: `live: ${label(p)}`, after: `desired: ${label(p)}` });
  }
  return out;
}
