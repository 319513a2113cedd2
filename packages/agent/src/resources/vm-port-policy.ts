import type { VmPortPolicySpec } from "@netfleet/shared";
import { mutate } from "../exec/runner.ts";
import { observeOvs, type OvsState } from "./ovs.ts";
import type { Changes, ObserveContext, ResourceHandler, ResourcePlan } from "./types.ts";

/** One OpenFlow rule in table 0, in the form ovs-ofctl prints and reads. */
export interface Flow {
  priority: number;
  /** Match fields, e.g. `ip`, `in_port=3`, `dl_src=52:54:00:aa:00:01`. */
  match: string[];
  actions: string;
}

export interface VmPort {
  port: string;
  ofport: number;
  mac: string;
}

export interface VmPortObservation {
  bridgeExists: boolean;
  vmPorts: VmPort[];
  uplinkOfport?: number;
  flows: Flow[];
}

const BROADCAST = "ff:ff:ff:ff:ff:ff";
/** Counters and metadata that ovs-ofctl prints but that are not part of a rule's identity. */
const VOLATILE = /^(cookie|duration|table|n_packets|n_bytes|idle_age|hard_age|reset_counts|send_flow_rem|importance|idle_timeout|hard_timeout)=?/;

export function flowKey(f: Flow): string {
  return `${f.priority}|${[...f.match].sort().join(",")}`;
}

export function formatFlow(f: Flow): string {
  return [`priority=${f.priority}`, ...f.match].join(",") + ` actions=${f.actions}`;
}

/** Parses `ovs-ofctl dump-flows --no-stats` (with or without stats). */
export function parseFlows(text: string): Flow[] {
  const flows: Flow[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("OFPST_") || line.startsWith("NXST_")) continue;
    const at = line.lastIndexOf(" actions=");
    if (at < 0) continue;
    const actions = line.slice(at + " actions=".length).trim();
    let priority = 32768;
    const match: string[] = [];
    for (const token of line.slice(0, at).split(",").map((t) => t.trim()).filter(Boolean)) {
      if (token.startsWith("priority=")) priority = Number(token.slice("priority=".length));
      else if (!VOLATILE.test(token)) match.push(token);
    }
    flows.push({ priority, match, actions });
  }
  return flows;
}

/** VM ports on the bridge: interfaces that libvirt (or the lab, acting as hypervisor) marked with the VM's MAC. */
export function vmPortsOf(state: OvsState, bridge: string): VmPort[] {
  const br = state.bridges.get(bridge);
  if (!br) return [];
  const ifaceByUuid = new Map([...state.interfaces.values()].map((i) => [i.uuid, i]));
  const out: VmPort[] = [];
  for (const port of state.ports.values()) {
    if (!br.portUuids.includes(port.uuid)) continue;
    for (const uuid of port.interfaceUuids) {
      const iface = ifaceByUuid.get(uuid);
      const mac = iface?.externalIds["attached-mac"];
      if (iface && mac && iface.ofport !== undefined && iface.ofport > 0) out.push({ port: iface.name, ofport: iface.ofport, mac: mac.toLowerCase() });
    }
  }
  return out.sort((a, b) => a.ofport - b.ofport);
}

/**
 * The rules for one bridge, from the VM ports that exist right now.
 *  - 200: anything else from a VM port is dropped (spoofed MAC or IP, other ethertypes).
 *  - 210: a VM's own MAC (and IP when known) goes to NORMAL switching; DHCP from 0.0.0.0 too.
 *  - 215: unicast to an isolated VM from anyone but the gateway is dropped, across hosts too.
 *  - 220: an isolated VM talks only to the gateway (unicast to its MAC, ARP for its IP, DHCP),
 *         straight out of the uplink; unicast from the gateway reaches it.
 * ARP and DHCP need no static entries: the gateway's broadcasts still flood (priority 0 NORMAL).
 */
export function desiredFlows(spec: VmPortPolicySpec, obs: Pick<VmPortObservation, "vmPorts" | "uplinkOfport">): Flow[] {
  const flows: Flow[] = [];
  const gw = spec.gateway;
  for (const port of obs.vmPorts) {
    const vm = spec.vms.find((v) => v.mac.toLowerCase() === port.mac);
    const isolated = vm?.isolated ?? spec.isolatedDefault;
    const inPort = `in_port=${port.ofport}`;
    const src = `dl_src=${port.mac}`;
    const ipMatch = vm?.ip ? ["ip", inPort, src, `nw_src=${vm.ip}`] : ["ip", inPort, src];
    const arpMatch = vm?.ip ? ["arp", inPort, src, `arp_sha=${port.mac}`, `arp_spa=${vm.ip}`] : ["arp", inPort, src, `arp_sha=${port.mac}`];
    const dhcp = ["udp", inPort, src, "nw_src=0.0.0.0", "tp_src=68", "tp_dst=67"];
    flows.push({ priority: 200, match: [inPort], actions: "drop" });
    if (!isolated || obs.uplinkOfport === undefined) {
      flows.push({ priority: 210, match: ipMatch, actions: "NORMAL" });
      flows.push({ priority: 210, match: arpMatch, actions: "NORMAL" });
      if (vm?.ip) flows.push({ priority: 210, match: dhcp, actions: "NORMAL" });
      continue;
    }
    const up = `output:${obs.uplinkOfport}`;
    flows.push({ priority: 220, match: [...ipMatch, `dl_dst=${gw.mac}`], actions: up });
    flows.push({ priority: 220, match: [...arpMatch, `dl_dst=${gw.mac}`], actions: up });
    flows.push({ priority: 220, match: [...arpMatch, `dl_dst=${BROADCAST}`, `arp_tpa=${gw.ip}`], actions: up });
    flows.push({ priority: 220, match: [...dhcp.filter((m) => m !== "nw_src=0.0.0.0"), `dl_dst=${BROADCAST}`], actions: up });
    flows.push({ priority: 220, match: [`in_port=${obs.uplinkOfport}`, `dl_src=${gw.mac}`, `dl_dst=${port.mac}`], actions: `output:${port.ofport}` });
    flows.push({ priority: 215, match: [`dl_dst=${port.mac}`], actions: "drop" });
  }
  return flows;
}

export const vmPortPolicy: ResourceHandler<VmPortPolicySpec, VmPortObservation> = {
  kind: "vm-port-policy",
  async observe(spec, ctx: ObserveContext) {
    const state = await observeOvs(ctx);
    if (!state.bridges.has(spec.name)) return { bridgeExists: false, vmPorts: [], flows: [] };
    const dump = await ctx.read(ctx.tools.ovsOfctl("dump-flows", spec.name, `cookie=${spec.cookie}/-1`, "--no-stats"));
    const uplink = state.interfaces.get(spec.uplinkPort)?.ofport;
    const obs: VmPortObservation = { bridgeExists: true, vmPorts: vmPortsOf(state, spec.name), flows: parseFlows(dump.stdout) };
    if (uplink !== undefined && uplink > 0) obs.uplinkOfport = uplink;
    return obs;
  },
  plan(spec, obs, ctx): ResourcePlan {
    const want = desiredFlows(spec, obs);
    const have = new Map(obs.flows.map((f) => [flowKey(f), f]));
    const wanted = new Map(want.map((f) => [flowKey(f), f]));
    const lines: string[] = [];
    const added: string[] = [];
    const removed: string[] = [];
    for (const [key, f] of wanted) {
      if (have.get(key)?.actions === f.actions) continue;
      lines.push(`add cookie=${spec.cookie},${formatFlow(f).replace(" actions=", ",actions=")}`);
      added.push(formatFlow(f));
    }
    for (const [key, f] of have) {
      if (wanted.has(key)) continue;
      lines.push(`delete_strict cookie=${spec.cookie}/-1,${[`priority=${f.priority}`, ...f.match].join(",")}`);
      removed.push(formatFlow(f));
    }
    if (lines.length === 0) return { changes: {}, commands: [] };
    const changes: Changes = { flows: { old: removed, new: added } };
    // One bundle: all rules of the bridge change together or not at all.
    return { changes, commands: [mutate(ctx.tools.ovsOfctlBundle(spec.name), lines.join("\n") + "\n")] };
  },
};
