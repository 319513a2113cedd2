import {
  bridgeName,
  IPFIX_PORT,
  parseCollector,
  SFLOW_PORT,
  type Host,
  type Inventory,
  type OvsSamplingSpec,
  type ResourceSpec,
} from "@netfleet/shared";

/**
 * The site's `sflow:` / `ipfix:` as resources: one `ovs-sampling` per VM
 * network bridge (`br-<network>`) of a vmhost, right after that bridge's
 * `ovs-bridge`, and the prune's `keep.sampling` naming them. Every VM port
 * sits on such a bridge and every frame of a VM crosses it, so each frame is
 * sampled once per host; the trunk bridge and the backend are left out (a
 * frame sampled there again would count twice at the collector).
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
  const bridges = new Set(host.networks.map(bridgeName));
  const out: ResourceSpec[] = [];
  const sampled: string[] = [];
  for (const r of resources) {
    if (r.kind === "prune") {
      out.push({ ...r, keep: { ...r.keep, sampling: [...sampled].sort() } });
      continue;
    }
    out.push(r);
    if (r.kind !== "ovs-bridge" || !bridges.has(r.name)) continue;
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
