import { z } from "zod";
import { Ipv4Address } from "./ipv4.ts";
import { INTERFACE_NAME } from "./names.ts";

/**
 * Packet sampling of one OVS bridge: the sFlow and IPFIX rows of the OVS
 * database (ovs-vswitchd.conf.db(5), tables sFlow and IPFIX) that the
 * bridge's `sflow` and `ipfix` columns reference. The controller compiles
 * it from the site's `sflow:` / `ipfix:` (controller compile/sampling.ts),
 * the agent converges it (agent resources/ovs-sampling.ts). A bridge
 * without this resource keeps no sampling of ours (prune clears it).
 */

/** A UDP target as OVS writes it: `a.b.c.d:port` (ovs-vswitchd.conf.db(5): "in the form ip:port"). */
const target = z.string().refine((t) => {
  const m = /^([0-9.]+):([1-9]\d{0,4})$/.exec(t);
  return m !== null && Ipv4Address.safeParse(m[1]).success && Number(m[2]) <= 65535;
}, "must be an IPv4 target a.b.c.d:port (port 1-65535)");
/** OVS's integer columns here are 1..2^32-1 (IPFIX `sampling`) or 0..2^32-1. */
const u32 = z.number().int().min(0).max(4294967295);

/** The sFlow row: collectors, agent address, rates (OVS sFlow table columns). */
export const SflowExport = z.strictObject({
  /** sFlow `targets`: collectors, `a.b.c.d:port`, sorted, at least one. */
  targets: z.array(target).min(1),
  /**
   * sFlow `agent`: the address collectors see as the datagrams' agent
   * address (the host's management address). Absent: OVS picks it from the
   * route to the first target.
   */
  agent: Ipv4Address.optional(),
  /** sFlow `sampling`: one packet in N. */
  sampling: u32.min(1),
  /** sFlow `polling`: seconds between counter samples of each port. */
  polling: z.number().int().min(1).max(3600),
  /** sFlow `header`: bytes of each sampled packet sent. */
  header: z.number().int().min(18).max(512),
});

/** The IPFIX row of per-bridge sampling (OVS IPFIX table columns). */
export const IpfixExport = z.strictObject({
  /** IPFIX `targets`: collectors, `a.b.c.d:port`, sorted, at least one. */
  targets: z.array(target).min(1),
  /** IPFIX `sampling`: one packet in N (1-4294967295). */
  sampling: u32.min(1),
  /** IPFIX `cache_active_timeout`, seconds 0-4200; 0: no cache. */
  cacheActiveTimeout: z.number().int().min(0).max(4200),
  /** IPFIX `cache_max_flows`; 0: no cache. */
  cacheMaxFlows: u32,
});

/** Sampling of the bridge `name`: an sFlow row, an IPFIX row, or both (at least one). */
export const OvsSamplingSpec = z
  .strictObject({
    kind: z.literal("ovs-sampling"),
    /** The OVS bridge. */
    name: z.string().regex(INTERFACE_NAME),
    sflow: SflowExport.optional(),
    ipfix: IpfixExport.optional(),
  })
  .check((ctx) => {
    if (!ctx.value.sflow && !ctx.value.ipfix) ctx.issues.push({ code: "custom", message: "give sflow, ipfix or both", input: ctx.value });
  });

export type SflowExport = z.output<typeof SflowExport>;
export type IpfixExport = z.output<typeof IpfixExport>;
export type OvsSamplingSpec = z.output<typeof OvsSamplingSpec>;

/**
 * One line for `netfleet plan`: `sFlow to 10.0.0.9:6343 (1 in 400, counters
 * every 30 s, agent 10.0.0.11); IPFIX to 10.0.0.9:4739 (1 in 400)`. Pure.
 */
export function samplingSummary(spec: OvsSamplingSpec): string {
  const parts: string[] = [];
  if (spec.sflow) {
    const s = spec.sflow;
    parts.push(`sFlow to ${s.targets.join(",")} (1 in ${s.sampling}, counters every ${s.polling} s, ${s.header}-byte headers, agent ${s.agent ?? "by route"})`);
  }
  if (spec.ipfix) {
    const i = spec.ipfix;
    parts.push(`IPFIX to ${i.targets.join(",")} (1 in ${i.sampling}${i.cacheActiveTimeout > 0 ? `, cache ${i.cacheActiveTimeout} s` : ""}${i.cacheMaxFlows > 0 ? ` up to ${i.cacheMaxFlows} flows` : ""})`);
  }
  return parts.join("; ");
}
