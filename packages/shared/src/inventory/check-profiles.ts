import { bitsOf, formatBits, type BandwidthLimit } from "../bandwidth.ts";
import { resolvePortSets } from "./ports.ts";
import { POLICY_KEYS, vmKey, type PolicySource, type PolicySources, type VmPolicyOrigin } from "./profiles.ts";
import type { NetworkSpec } from "./schema-network.ts";
import type { BandwidthLimitSpec } from "./schema-bandwidth.ts";
import type { ProfileSpec } from "./schema-profiles.ts";
import type { Host, Network, Vm } from "./model.ts";
import type { Located, Reporter, Ref } from "./report.ts";

/** What `resolveVmPolicies` reads: the merged network specs (profiles.ts) and the resolved networks (same order, MTU settled), hosts, profiles. */
export interface VmPolicyInput {
  profiles: Located<ProfileSpec>[];
  networks: Located<NetworkSpec>[];
  resolved: Network[];
  hosts: Located<Host>[];
  origins: Map<string, VmPolicyOrigin>;
}

/**
 * Puts on each resolved VM what the network resolution does not: its
 * profile and the source of every policy key (`sources`), its own gateway
 * services, and its bandwidth in numbers (bit/s, bits), the burst defaulted
 * by `resolveLimit` (egress 80 % of the rate, ingress a tenth). Runs
 * after the MTUs are settled (check-gateway.ts).
 *
 * Problems, at the key that set the value (the VM's, or the profile's with
 * the VM named): a burst below one frame of the network (mtu bytes x 8 bits;
 * a token bucket smaller than a frame never passes that frame, and OVS's
 * ingress_policing_burst says "should be at least the size of the
 * interface's MTU", ovs-vswitchd.conf.db(5)); a rate above the uplink
 * `speed` of a host the VM may run on (its `host`, else every vmhost
 * carrying the network); gateway services for a VM without a static ip
 * (the firewall matches them by source address).
 */
export function resolveVmPolicies(r: Reporter, { profiles, networks, resolved, hosts, origins }: VmPolicyInput): void {
  const profileRef = new Map(profiles.map((p) => [p.name, p.ref]));
  networks.forEach(({ name: netName, value: net, ref }, i) => {
    const network = resolved[i];
    if (!network) return;
    const carriers = hosts.filter((h) => h.value.role === "vmhost" && h.value.networks.includes(netName));
    for (const vm of network.vms) {
      const spec = net.vms[vm.name];
      if (!spec) continue;
      const origin = origins.get(vmKey(netName, vm.name)) ?? { sources: {} };
      const vmRef = r.at(ref, "vms", vm.name);
      const sources = fullSources(origin.sources, vm);
      /** Where a key of this VM was written: its own, or its profile's. */
      const placeOf = (key: string, ...rest: (string | number)[]): Ref => {
        const s = sources[key as keyof PolicySources];
        const pRef = s && "profile" in s ? profileRef.get(s.profile) : undefined;
        return pRef ? r.at(pRef, ...key.split("."), ...rest) : r.at(vmRef, ...key.split("."), ...rest);
      };
      /** A profile's value is refused for one VM that uses it: the message says which. */
      const forVm = (key: string) => (sources[key as keyof PolicySources]?.from === "vm" ? "" : `for VM ${vm.name} of network ${netName}: `);

      if (origin.profile) vm.profile = origin.profile;
      vm.sources = sources;
      if (spec.gateway_services && spec.gateway_services.length > 0) {
        if (vm.ip === undefined) r.report(placeOf("gateway_services"), `${forVm("gateway_services")}gateway services of one VM are matched by its address: VM ${vm.name} needs a static ip`);
        vm.gateway_services = resolvePortSets(spec.gateway_services);
      }
      if (!spec.bandwidth) continue;
      const hostsOfVm = vm.host ? carriers.filter((h) => h.name === vm.host) : carriers;
      const bandwidth: NonNullable<Vm["bandwidth"]> = {};
      for (const dir of ["egress", "ingress"] as const) {
        const limit = spec.bandwidth[dir];
        if (!limit) continue;
        const key = `bandwidth.${dir}`;
        const resolvedLimit = resolveLimit(limit, network.mtu, dir);
        bandwidth[dir] = resolvedLimit;
        const frame = network.mtu * 8;
        if (limit.burst !== undefined && resolvedLimit.burst < frame) {
          r.report(placeOf(key, "burst"), `${forVm(key)}burst ${formatBits(resolvedLimit.burst)} is below one frame of network ${netName} (mtu ${network.mtu} bytes = ${frame} bits): no frame of full size would ever pass`);
        }
        for (const h of hostsOfVm) {
          const speed = h.value.uplink.speed;
          if (speed === undefined) continue;
          const bits = bitsOf(speed);
          if (resolvedLimit.rate <= bits) continue;
          const at = h.origin?.get("uplink.speed");
          r.report(placeOf(key, "rate"), `${forVm(key)}rate ${formatBits(resolvedLimit.rate)}/s is beyond the uplink of host ${h.name} (speed ${formatBits(bits)}/s${at ? ` at ${r.where(at)}` : ""})`);
        }
      }
      vm.bandwidth = bandwidth;
    }
  });
}

/**
 * Numbers of one direction: the burst as written, else a default of at
 * least one frame of `mtu` bytes. egress (what the VM sends) is policed:
 * above the rate a packet is dropped, and TCP reaches the rate only with a
 * large bucket, so 80 % of the rate (Neutron's QoS guide: max_burst_kbps 80 %
 * of max_kbps for TCP; measured on the lab's OVS at 50 Mbit/s: 5 Mbit gave
 * 31 Mbit/s, 40 Mbit 49.2). ingress (what it receives) is shaped by a queue,
 * which delays instead of dropping: a tenth of the rate (100 ms at it).
 */
export function resolveLimit(limit: BandwidthLimitSpec, mtu: number, direction: "egress" | "ingress"): BandwidthLimit {
  const rate = bitsOf(limit.rate, "rate");
  const share = direction === "egress" ? 0.8 : 0.1;
  const burst = limit.burst !== undefined ? bitsOf(limit.burst, "burst") : Math.max(Math.ceil(rate * share), mtu * 8);
  return { rate, burst };
}

/** Every key's source: the VM's or its profile's where set, else the network's setting or the default. */
function fullSources(set: Partial<PolicySources>, vm: Vm): PolicySources {
  const fallback = (key: (typeof POLICY_KEYS)[number]): PolicySource => {
    if (key === "isolated") return { from: "network" };
    if (key === "cluster_groups" && vm.groups.length > 0) return { from: "network" };
    return { from: "default" };
  };
  return Object.fromEntries(POLICY_KEYS.map((k) => [k, set[k] ?? fallback(k)])) as PolicySources;
}
