import { z } from "zod";

/**
 * Counters in `netfleet show` and their summary in `netfleet status`
 * (issue 17 point 5). The per-port numbers are in the HostView itself (OVS
 * Interface `statistics`, kernel `ip -s` stats64, OVS bonds as `ovs-appctl
 * bond/show` and `lacp/show` print them); this file holds the per-host
 * summary an agent sends on request (ShowRequest `scope: "counters"`) and
 * its schemas (counters-summary.ts has the pure functions that make and
 * judge it). New optional fields of
 * protocol 1.2 (the lead bumps to 1.3): an older agent answers with a
 * whole view and no summary, and the controller summarises that view itself
 * (without deltas).
 */

const count = z.number().int().min(0);
const name = z.string().max(256);

/** One interface whose errors or drops rose since the baseline sample (deltas, packets). */
export const CounterRise = z.strictObject({
  /** OVS Interface name, or kernel link name. */
  name,
  /** The OVS bridge holding it; absent for a kernel link outside OVS. */
  bridge: name.optional(),
  /** rx_errors + tx_errors gained since the baseline. */
  errors: count,
  /** rx_dropped + tx_dropped gained since the baseline. */
  drops: count,
});

/** A bond (OVS: a Port with several Interfaces; kernel: a link of kind bond) and the state of its members. */
export const BondSummary = z.strictObject({
  name,
  /** The OVS bridge holding it; absent for a kernel bond. */
  bridge: name.optional(),
  /**
   * OVS `lacp_status` of bond/show: `negotiated`, `configured` (LACP on but
   * no partner agreed), `off`; kernel: absent.
   */
  lacp: z.string().max(32).optional(),
  /** Members carrying traffic (OVS `enabled`; kernel: mii_status UP). */
  membersUp: z.array(name).max(64),
  /** Members not carrying traffic (OVS `disabled`; kernel: mii_status not UP). */
  membersDown: z.array(name).max(64),
});

/**
 * What `netfleet status` shows of a host's counters: totals over its
 * interfaces (each OVS Interface once, and each kernel link that is not an
 * OVS Interface; `lo` left out), what rose since the agent's baseline
 * sample, and its bonds.
 */
export const CountersSummary = z.strictObject({
  /** When the counters were read (the view's `at`). */
  at: z.iso.datetime({ offset: true }),
  /** Seconds between the baseline sample and this one; absent when there was no baseline (the agent's first read). */
  sinceS: z.number().min(0).optional(),
  /** How many interfaces were counted. */
  interfaces: count,
  /** rx+tx errors and drops, totals since each interface was created. */
  errors: count,
  drops: count,
  /** Interfaces whose errors or drops rose since the baseline (at most 64, the largest rises first). */
  rising: z.array(CounterRise).max(64),
  bonds: z.array(BondSummary).max(64),
});

export type CounterRise = z.output<typeof CounterRise>;
export type BondSummary = z.output<typeof BondSummary>;
export type CountersSummary = z.output<typeof CountersSummary>;
