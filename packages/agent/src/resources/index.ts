import type { ResourceSpec } from "@netfleet/shared";
import { prune } from "./prune.ts";
import { interfaceAddress, kernelBond, vlanInterface } from "./ip-link.ts";
import { libvirtNetwork } from "./libvirt.ts";
import { ovsBridge } from "./ovs.ts";
import { ovsMirror } from "./ovs-mirror.ts";
import { ovsSampling } from "./ovs-sampling.ts";
import { sysctl } from "./sysctl.ts";
import { dnsmasq } from "./dnsmasq.ts";
import { nftTable } from "./nft.ts";
import { vmPortPolicy } from "./vm-port-policy.ts";
import { vxlanInterface } from "./vxlan-interface.ts";
import type { ResourceHandler } from "./types.ts";

/** Every resource kind the agent knows, by the `kind` of its spec. */
export const handlers: { [K in ResourceSpec["kind"]]: ResourceHandler<Extract<ResourceSpec, { kind: K }>, any> } = {
  "kernel-bond": kernelBond,
  "vlan-interface": vlanInterface,
  "interface-address": interfaceAddress,
  "ovs-bridge": ovsBridge,
  "libvirt-network": libvirtNetwork,
  sysctl,
  "vm-port-policy": vmPortPolicy,
  dnsmasq,
  "nft-table": nftTable,
  "ovs-sampling": ovsSampling,
  "vxlan-interface": vxlanInterface,
  "ovs-mirror": ovsMirror,
  prune,
};

/** The handler of a spec's kind, typed for any spec (the engine's view). */
export function handlerFor(spec: ResourceSpec): ResourceHandler<ResourceSpec, unknown> {
  return handlers[spec.kind] as unknown as ResourceHandler<ResourceSpec, unknown>;
}
