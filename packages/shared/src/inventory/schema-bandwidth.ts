import { z } from "zod";
import { BURST_HELP, parseBits, RATE_HELP } from "../bandwidth.ts";
import { json } from "./schema-fields.ts";

/**
 * The `bandwidth` key of a VM and of a profile (schema-profiles.ts):
 * rates and bursts as bandwidth.ts reads them. Its own file so that
 * schema-network.ts (VMs) and schema-profiles.ts (which takes the VM's
 * allow entries) both import it without importing each other.
 */

/** Rates and bursts in the JSON Schema: a positive number (digits, an optional fraction, not all zeros) with an optional bit unit. */
const BITS_PATTERN = "^([0-9]*[1-9][0-9]*(\\.[0-9]+)?|[0-9]+\\.[0-9]*[1-9][0-9]*)\\s*([kKmMgGtT]?[bB][iI][tT])?$";

/** A rate (bit/s) or burst (bits) as written: a positive integer, or digits with a bit unit (`50Mbit`); checked by `parseBits`. */
export function bitsField(kind: "rate" | "burst") {
  return json(
    z.union([z.number(), z.string()]).check((ctx) => {
      const n = parseBits(ctx.value, kind);
      if (typeof n === "string") ctx.issues.push({ code: "custom", message: n, input: ctx.value });
    }),
    {
      anyOf: [
        { type: "integer", minimum: 1, description: kind === "rate" ? "A rate in bit/s (a bare number)" : "A size in bits (a bare number)" },
        { type: "string", pattern: BITS_PATTERN, patternErrorMessage: `must be ${kind === "rate" ? RATE_HELP : BURST_HELP}`, description: kind === "rate" ? "A rate with a bit unit: 50Mbit, 500kbit, 1.5Gbit (1000-based, as tc(8))" : "A size with a bit unit: 1Mbit, 500kbit (1000-based)" },
      ],
    },
  );
}

/** One direction's limit as written: a rate and an optional burst. */
export const BandwidthLimitSpec = z.strictObject({
  rate: bitsField("rate").describe(`Rate, ${RATE_HELP}; above 0 and at most the uplink speed of the VM's hosts (uplink.speed) where it is given`),
  burst: bitsField("burst")
    .optional()
    .describe(`Burst, ${BURST_HELP}; at least one full frame of the network (mtu bytes x 8). Default: egress 80 % of the rate (a policer drops above the rate; TCP needs that much to reach it), ingress a tenth of the rate (a shaper queues instead); at least one frame either way`),
});

/**
 * A VM's bandwidth, VM-centric as Neutron QoS rules and libvirt's
 * `<bandwidth>`: `egress` is what the VM sends, `ingress` what it receives.
 * Each direction is its own key: a VM overrides its profile's egress and
 * ingress separately.
 */
export const BandwidthSpec = z
  .strictObject({
    egress: BandwidthLimitSpec.optional().describe("What the VM sends: policed by an OpenFlow meter on its port's rules (drop above the rate). Absent: unlimited"),
    ingress: BandwidthLimitSpec.optional().describe("What the VM receives: shaped by a linux-htb QoS queue on its port. Absent: unlimited"),
  })
  .describe("Bandwidth limits, VM-centric (as Neutron QoS and libvirt <bandwidth>): egress = what the VM sends, ingress = what it receives; rates in bit/s, bursts in bits, 1000-based suffixes as tc(8)");

export type BandwidthLimitSpec = z.output<typeof BandwidthLimitSpec>;
export type BandwidthSpec = z.output<typeof BandwidthSpec>;

/** Keys a did-you-mean may offer below a `bandwidth` key, `rest` the path below it (problems.ts). */
export function bandwidthKeysFor(rest: readonly (string | number)[]): string[] {
  if (rest.length === 0) return Object.keys(BandwidthSpec.shape);
  if (rest.length === 1) return Object.keys(BandwidthLimitSpec.shape);
  return [];
}
