import { bridgeName, IPFIX_PORT, parseCollector, SFLOW_PORT, type Inventory } from "@netfleet/shared";
import { graphId, type GraphElement, type GraphLink } from "./types.ts";

/**
 * What the site copies out of its networks: port mirrors (inventory
 * `mirrors:`, shared model-mirror.ts; compile/mirrors.ts makes an OVS
 * Mirror on the network's bridge of every vmhost carrying it) and the sFlow
 * and IPFIX collectors (`site.sflow`, `site.ipfix`; compile/sampling.ts:
 * every OVS bridge of every vmhost exports).
 */

/**
 * Per mirror, a dotted arrow from each source VM (or from the network, for a
 * whole-network mirror) to the capture VM, or to a node for its GRE/ERSPAN
 * target (`mirror:<name>`), labelled `mirror <name> (<direction>)`.
 */
export function mirrorElements(inventory: Inventory, add: (e: GraphElement) => void, link: (l: GraphLink) => void): void {
  for (const m of inventory.mirrors ?? []) {
    const label = `mirror ${m.name} (${m.direction})`;
    let target: string;
    if ("vm" in m.destination) target = graphId.vm(m.network, m.destination.vm);
    else {
      target = graphId.mirrorTarget(m.name);
      const tunnel =
        "gre" in m.destination
          ? [`GRE to ${m.destination.gre.remote_ip}`, ...(m.destination.gre.key !== undefined ? [`key ${m.destination.gre.key}`] : [])]
          : [`ERSPAN type ${m.destination.erspan.erspan_ver === 2 ? "III" : "II"} to ${m.destination.erspan.remote_ip}`, `session ${m.destination.erspan.key}`];
      add({ id: target, kind: "mirror-target", name: m.name, label: [`mirror ${m.name}`, ...tunnel, `port mr-${m.name}`] });
    }
    const sources = m.vms?.map((vm) => graphId.vm(m.network, vm)) ?? [graphId.network(m.network)];
    for (const from of sources) link({ from, to: target, label, style: "dotted", arrow: true });
  }
}

/**
 * One node per sFlow and IPFIX collector (`collector:<sflow|ipfix>/<address:port>`,
 * default ports 6343 and 4739), with a dotted arrow from every OVS bridge of
 * every vmhost (its VM network bridges and, in ovs-trunk mode, its trunk
 * bridge: the bridges that export).
 */
export function collectorElements(inventory: Inventory, add: (e: GraphElement) => void, link: (l: GraphLink) => void): void {
  // compile/sampling.ts withSampling: every OVS bridge of a vmhost exports, its ovs-trunk bridge too (OVS samples a
  // frame where it enters the datapath: a reply to a VM enters at the trunk bridge, not again behind the patch port).
  const bridges = inventory.hosts
    .filter((h) => h.role === "vmhost")
    .flatMap((h) => [
      ...(h.uplink.mode === "ovs-trunk" ? [graphId.onHost(h.name, "trunk", h.uplink.trunk_bridge)] : []),
      ...inventory.networks.filter((n) => h.networks.includes(n.name)).map((n) => graphId.onHost(h.name, "bridge", bridgeName(n.name))),
    ]);
  const exports = [
    { protocol: "sflow" as const, settings: inventory.site.sflow, port: SFLOW_PORT, title: "sFlow collector", detail: (s: NonNullable<Inventory["site"]["sflow"]>) => `1 in ${s.sampling} packets, counters every ${s.polling} s` },
    { protocol: "ipfix" as const, settings: inventory.site.ipfix, port: IPFIX_PORT, title: "IPFIX collector", detail: (s: NonNullable<Inventory["site"]["ipfix"]>) => `1 in ${s.sampling} packets` },
  ];
  for (const x of exports) {
    if (!x.settings) continue;
    for (const text of x.settings.collectors) {
      // The loader refused any collector parseCollector does not read.
      const c = parseCollector(text, x.port);
      const target = c ? `${c.address}:${c.port}` : text;
      const id = graphId.collector(x.protocol, target);
      add({ id, kind: "collector", name: target, label: [x.title, target, (x.detail as (s: typeof x.settings) => string)(x.settings)] });
      for (const from of bridges) link({ from, to: id, style: "dotted", arrow: true });
    }
  }
}
