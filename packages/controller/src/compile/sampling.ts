import {
  IPFIX_PORT,
  parseCollector,
  SFLOW_PORT,
  type Host,
  type Inventory,
  type OvsSamplingSpec,
  type ResourceSpec,
} from "@netfleet/shared";

/**
 * The site's `sflow:` / `ipfix:` as resources: one `ovs-sampling` after
 * each `ovs-bridge` of a vmhost (its VM network bridges `br-<network>`, and
 * in ovs-trunk mode its trunk bridge), and the prune's `keep.sampling`
 * naming them. OVS samples a frame on the bridge where it enters the
 * datapath, patch ports included in the same pass: a VM's frame on its VM
 * port's bridge, a frame from the uplink on the trunk bridge (measured on
 * OVS 3.1, test/lab/sampling.test.ts: a reply to a VM is sampled with the
 * uplink member's ifindex as input, never at the VM bridge behind the
 * patch port), so with every bridge of the
 * host sampling, each frame is sampled once per host it enters, as a switch
 * samples its ingress. The backend samples nothing: what its gateway sends
 * a VM is sampled where it enters the VM's host.
 *
 * The sFlow agent address is the host's management `address` (what the
 * collector files the samples under); a host without one leaves it to OVS
 * (ovs-vswitchd.conf.db(5) sFlow `agent`: the route to the first target).
 * Pure; returns `resources` unchanged when the site samples nothing or the
 * host is not a vmhost.
 */
export function withSampling(inventory: Inventory, host: Host, resources: ResourceSpec[]): ResourceSpec[] {
  const { sflow, ipfix } = inventory.site;
  if ((!sflow && !ipfix) || host.role !== "vmhost") return resources;
  const targets = (list: readonly string[], port: number) =>
    [...new Set(list.map((t) => parseCollector(t, port)).filter((c) => c !== undefined).map((c) => `${c.address}:${c.port}`))].sort();
  const out: ResourceSpec[] = [];
  const sampled: string[] = [];
  for (const r of resources) {
    if (r.kind === "prune") {
      out.push({ ...r, keep: { ...r.keep, sampling: [...sampled].sort() } });
      continue;
    }
    out.push(r);
    if (r.kind !== "ovs-bridge") continue;
    const spec: OvsSamplingSpec = { kind: "ovs-sampling", name: r.name };
    if (sflow) {
      spec.sflow = {
        targets: targets(sflow.collectors, SFLOW_PORT),
        ...(host.address !== undefined ? { agent: host.address } : {}),
        sampling: sflow.sampling,
        polling: sflow.polling,
        header: sflow.header,
      };
    }
    if (ipfix) {
      spec.ipfix = {
        targets: targets(ipfix.collectors, IPFIX_PORT),
        sampling: ipfix.sampling,
        cacheActiveTimeout: ipfix.cache_active_timeout,
        cacheMaxFlows: ipfix.cache_max_flows,
      };
    }
    out.push(spec);
    sampled.push(r.name);
  }
  return out;
}
