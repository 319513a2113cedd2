import type { VmPortPolicySpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import type { Flow } from "./openflow.ts";
import type { PlanContext } from "./types.ts";

/**
 * What a VM sends (its `bandwidth.egress`), limited on its OVS port by an
 * OpenFlow 1.3 meter (OpenFlow 1.3.5 §5.7; ovs-ofctl(8) "Meter Syntax"):
 * one meter per limited VM port, a single drop band at the VM's rate
 * (kbps) with its burst (kilobits), and each of the port's table-0 rules
 * that lets a frame on (not the drops) starts with `meter:<id>`. Meters
 * work on both of OVS's datapaths (the userspace dpif-netdev and the Linux
 * kernel module since 4.15).
 *
 * Why not Interface `ingress_policing_rate` (ovs-vswitchd.conf.db(5)):
 * measured on the lab's userspace (netdev) datapath, OVS 3.1, a port
 * policed at 50000 kbps still sent 555 Mbit/s with iperf3; ovs-vswitchd
 * logged "adding cls_basic policing action failed: No such file or
 * directory" (it installs a tc police filter on the kernel device, which
 * this kernel cannot load, and which the userspace datapath's packet
 * socket would read past anyway). The meter gave 49.2 Mbit/s for 50 Mbit/s
 * with a 40 Mbit burst (see __fixtures__/ovs/bandwidth/BANDWIDTH.md).
 *
 * A meter polices (drops above the rate) rather than shapes: TCP needs a
 * burst of a good share of the rate to reach it (measured, 50 Mbit/s:
 * burst 1 Mbit → 6.9 Mbit/s, 5 Mbit → 31, 20 Mbit → 48.8, 40 Mbit → 49.2);
 * Neutron's QoS guide advises a burst of 80 % of the rate for TCP.
 *
 * Meter ids are the port's ofport (unique on the bridge, ≥ 1). The agent
 * owns every meter of a VM bridge as it owns its whole table 0 (the bridge
 * runs in secure fail mode): a meter no limited VM port wants is deleted.
 * Order matters (measured, __fixtures__/ovs/bandwidth): a rule naming a
 * meter that does not exist is refused (OFPMMFC_INVALID_METER), and
 * deleting a meter deletes the rules that name it; so meters are added or
 * changed before the rules are written, and deleted after.
 */

/** One meter as `ovs-ofctl dump-meters` prints it, reduced to what we set: kbps, burst, one drop band. */
export interface Meter {
  id: number;
  /** Band rate in kbps (1000 bit/s). */
  rateKbps: number;
  /** Band burst_size in kilobits. */
  burstKbit: number;
  /** The meter's text when it is not of that form (pktps, no burst, other bands): never equal to a wanted one. */
  other?: string;
}

/** kbps for a rate in bit/s: rounded, at least 1. */
export function kbpsOf(bitsPerSecond: number): number {
  return Math.max(1, Math.round(bitsPerSecond / 1000));
}

/** kilobits for a burst in bits: rounded, at least 1. */
export function kbitOf(bits: number): number {
  return Math.max(1, Math.round(bits / 1000));
}

/**
 * Parses `ovs-ofctl -O OpenFlow13 dump-meters BRIDGE` (OVS 3.1): a reply
 * header, then per meter `meter=N kbps burst bands=` and one line per band
 * `type=drop rate=R burst_size=B`, meters separated by a blank line.
 */
export function parseMeters(text: string): Meter[] {
  const meters: Meter[] = [];
  const blocks = text.split(/^(?=meter=)/m).filter((b) => b.startsWith("meter="));
  for (const block of blocks) {
    const lines = block.split("\n").map((l) => l.trim()).filter(Boolean);
    const head = /^meter=(\d+)\s+(.*?)\s*bands=$/.exec(lines[0] ?? "");
    if (!head) continue;
    const id = Number(head[1]);
    const flags = head[2]!.split(/\s+/).filter(Boolean).sort().join(" ");
    const bands = lines.slice(1);
    const band = /^type=drop rate=(\d+) burst_size=(\d+)$/.exec(bands[0] ?? "");
    if (flags === "burst kbps" && bands.length === 1 && band) meters.push({ id, rateKbps: Number(band[1]), burstKbit: Number(band[2]) });
    else meters.push({ id, rateKbps: 0, burstKbit: 0, other: lines.join(" ") });
  }
  return meters.sort((a, b) => a.id - b.id);
}

/** The meter of a VM port: its ofport as the id. */
export function meterIdOf(ofport: number): number {
  return ofport;
}

/** The ofport → egress limit of each VM port here whose VM (by MAC) has `bandwidth.egress`. */
export function desiredMeters(spec: VmPortPolicySpec, vmPorts: { ofport: number; mac: string }[]): Meter[] {
  const out: Meter[] = [];
  for (const port of vmPorts) {
    const egress = spec.vms.find((v) => v.mac.toLowerCase() === port.mac)?.bandwidth?.egress;
    if (egress) out.push({ id: meterIdOf(port.ofport), rateKbps: kbpsOf(egress.rate), burstKbit: kbitOf(egress.burst) });
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * Table-0 rules of a limited VM port that let its frames on (any action but
 * `drop`) start with its meter instruction: `meter:<id>,<actions>`.
 */
export function meteredFlows(flows: Flow[], meters: Meter[]): Flow[] {
  if (meters.length === 0) return flows;
  const ids = new Set(meters.map((m) => m.id));
  return flows.map((f) => {
    if (f.table || f.actions === "drop") return f;
    const inPort = f.match.find((m) => m.startsWith("in_port="));
    const port = inPort === undefined ? undefined : Number(inPort.slice("in_port=".length));
    return port !== undefined && ids.has(meterIdOf(port)) ? { ...f, actions: `meter:${meterIdOf(port)},${f.actions}` } : f;
  });
}

/** A meter as ovs-ofctl reads it (add-meter, mod-meter). */
export function meterText(m: Meter): string {
  return `meter=${m.id},kbps,burst,band=type=drop,rate=${m.rateKbps},burst_size=${m.burstKbit}`;
}

/** A meter for the plan's changes: `meter=3 rate=50000kbps burst=40000kbit`, or its own text. */
function describeMeter(m: Meter): string {
  return m.other ?? `meter=${m.id} rate=${m.rateKbps}kbps burst=${m.burstKbit}kbit`;
}

/** What converging the meters of one bridge takes: commands before the rules are written, and after. */
export interface MeterPlan {
  /** add-meter / mod-meter: the rules about to be written may name them. */
  before: Command[];
  /** del-meter: after the rules that named them are gone (deleting a meter deletes its rules). */
  after: Command[];
  /** `{ old, new }` as meter descriptions; undefined when nothing changes. */
  change?: { old: string[]; new: string[] };
  /** Ids of meters that changed or went although their port is still here (not a VM's start or stop). */
  touched: number[];
}

/**
 * Converges a bridge's meters to `want`. `have` undefined: the meters could
 * not be read (a datapath without meters): nothing is planned.
 */
export function planMeters(bridge: string, want: Meter[], have: Meter[] | undefined, ctx: PlanContext): MeterPlan {
  const plan: MeterPlan = { before: [], after: [], touched: [] };
  if (have === undefined) return plan;
  const haveById = new Map(have.map((m) => [m.id, m]));
  const wantIds = new Set(want.map((m) => m.id));
  const old: string[] = [];
  const added: string[] = [];
  for (const m of want) {
    const h = haveById.get(m.id);
    if (h && !h.other && h.rateKbps === m.rateKbps && h.burstKbit === m.burstKbit) continue;
    plan.before.push(mutate(ctx.tools.ovsOfctl(h ? "mod-meter" : "add-meter", bridge, meterText(m))));
    if (h) {
      old.push(describeMeter(h));
      plan.touched.push(m.id);
    }
    added.push(describeMeter(m));
  }
  for (const h of have) {
    if (wantIds.has(h.id)) continue;
    plan.after.push(mutate(ctx.tools.ovsOfctl("del-meter", bridge, `meter=${h.id}`)));
    old.push(describeMeter(h));
    plan.touched.push(h.id);
  }
  if (old.length > 0 || added.length > 0) plan.change = { old, new: added };
  return plan;
}
