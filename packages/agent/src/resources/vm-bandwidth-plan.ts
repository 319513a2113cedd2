import type { VmPortPolicySpec } from "@netfleet/shared";
import type { Command } from "../exec/runner.ts";
import type { Changes, PlanContext } from "./types.ts";
import { desiredMeters, planMeters, type Meter } from "./vm-bandwidth.ts";
import { planQos, type QosObservation } from "./vm-bandwidth-qos.ts";

/**
 * The bandwidth part of one VM bridge's plan (vm-port-policy): meters for
 * what each VM sends (vm-bandwidth.ts), linux-htb QoS for what it receives
 * (vm-bandwidth-qos.ts). Pure.
 */
export interface BandwidthPlan {
  /** add-meter / mod-meter: before the bridge's rule bundle (its rules may name them). */
  before: Command[];
  /** del-meter, then the QoS transaction: after the bundle. */
  after: Command[];
  /** `meters` and `qos`, `{ old, new }`, when they change. */
  changes: Changes;
  /** A limit of a port that already had its rules changed or went: not a VM's start or stop. */
  drift: boolean;
  /** Why a limit is not applied (meters unreadable, a QoS not ours). */
  notes: string[];
}

/** What of a VM bridge's observation the bandwidth plan reads. */
export interface BandwidthObservation {
  vmPorts: { port: string; ofport: number; mac: string }[];
  /** The bridge's meters; undefined when `dump-meters` failed (then no meter is planned, nor named by a rule). */
  meters?: Meter[];
  metersProblem?: string;
  /** Undefined in observations made before bandwidth existed (tests): no QoS is planned. */
  qos?: QosObservation;
}

/**
 * Plans the meters and QoS of one bridge. `portsWithRules`: ofports that
 * had rules of ours before this pass (a change to their limits is drift,
 * a fresh port's limits are lifecycle).
 */
export function planBandwidth(spec: VmPortPolicySpec, obs: BandwidthObservation, ctx: PlanContext, portsWithRules: Set<number>): BandwidthPlan {
  const out: BandwidthPlan = { before: [], after: [], changes: {}, drift: false, notes: [] };
  const wantsEgress = spec.vms.some((v) => v.bandwidth?.egress);
  if (obs.meters === undefined) {
    if (wantsEgress && obs.metersProblem !== undefined) out.notes.push(`egress limits not applied: meters cannot be read (${obs.metersProblem})`);
  } else {
    const meters = planMeters(spec.name, desiredMeters(spec, obs.vmPorts), obs.meters, ctx);
    out.before.push(...meters.before);
    out.after.push(...meters.after);
    if (meters.change) out.changes.meters = meters.change;
    if (meters.touched.some((id) => portsWithRules.has(id) && obs.vmPorts.some((p) => p.ofport === id))) out.drift = true;
  }
  if (obs.qos !== undefined) {
    const qos = planQos(spec, obs.vmPorts, obs.qos, ctx);
    out.after.push(...qos.commands);
    if (qos.change) out.changes.qos = qos.change;
    out.notes.push(...qos.notes);
    const ofportOf = new Map(obs.vmPorts.map((p) => [p.port, p.ofport]));
    if (qos.touchedPorts.some((p) => portsWithRules.has(ofportOf.get(p) ?? -1))) out.drift = true;
  }
  return out;
}
