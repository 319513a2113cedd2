import { z } from "zod";

/**
 * A VM's bandwidth limits as the assignment carries them, on
 * `VmPortPolicySpec.vms[].bandwidth` (protocol 1.3: an optional field; an
 * older agent ignores it). VM-centric, as Neutron QoS rules and libvirt's
 * `<bandwidth>` (formatdomain): `egress` is what the VM sends, `ingress`
 * what it receives; a side left out is unlimited. Numbers, not the
 * inventory's `50Mbit` text: `rate` in bit/s, `burst` in bits (1000-based,
 * as tc(8)). The controller fills it from the loaded model's `Vm.bandwidth`
 * (controller compile/bandwidth.ts); the agent enforces it on the VM's OVS
 * port (agent resources/vm-bandwidth.ts: an OpenFlow meter for egress,
 * resources/vm-bandwidth-qos.ts: a linux-htb QoS for ingress).
 */

/** Largest rate or burst: 1 Tbit (inventory/bandwidth.ts BANDWIDTH_MAX). */
const MAX = 1e12;

/** One direction's limit: `rate` in bit/s, `burst` in bits, both positive integers up to 10^12. */
export const VmBandwidthLimitSpec = z.strictObject({
  rate: z.number().int().min(1).max(MAX),
  burst: z.number().int().min(1).max(MAX),
});

/** A VM's limits: `egress` = what it sends, `ingress` = what it receives; absent side: unlimited. */
export const VmBandwidthSpec = z.strictObject({
  egress: VmBandwidthLimitSpec.optional(),
  ingress: VmBandwidthLimitSpec.optional(),
});

export type VmBandwidthLimitSpec = z.output<typeof VmBandwidthLimitSpec>;
export type VmBandwidthSpec = z.output<typeof VmBandwidthSpec>;
