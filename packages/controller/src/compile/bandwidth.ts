import type { Vm, VmBandwidthSpec } from "@netfleet/shared";

/**
 * A VM's bandwidth limits for its `vm-port-policy` entry: the loaded
 * model's `Vm.bandwidth` (bit/s and bits, VM-centric: egress = what the VM
 * sends, ingress = what it receives), as the assignment's optional
 * `bandwidth` field (shared assignment-bandwidth.ts). A VM without limits,
 * or with neither side, gets no field at all, so assignments of sites
 * without bandwidth stay byte for byte what they were (protocol 1.2 agents
 * read them unchanged). Pure.
 */
export function vmBandwidthField(vm: Pick<Vm, "bandwidth">): { bandwidth?: VmBandwidthSpec } {
  const b = vm.bandwidth;
  if (!b) return {};
  const out: VmBandwidthSpec = {};
  if (b.egress) out.egress = { rate: b.egress.rate, burst: b.egress.burst };
  if (b.ingress) out.ingress = { rate: b.ingress.rate, burst: b.ingress.burst };
  return out.egress || out.ingress ? { bandwidth: out } : {};
}
