import { join } from "node:path";
import { decodeNetworkLeases, liveLeases, type Lease, type VmPortPolicySpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { flowsDiff } from "./flow-diff.ts";
import { flowKey, formatFlow, matchText, parseFlows, type Flow } from "./openflow.ts";
import { observeOvs, type OvsState } from "./ovsdb.ts";
import type { Changes, ObserveContext, ResourceHandler, ResourcePlan } from "./types.ts";
import { desiredMeters, meteredFlows, parseMeters, type Meter } from "./vm-bandwidth.ts";
import { planBandwidth } from "./vm-bandwidth-plan.ts";
import { emptyQos, observeQos, stableQos, type QosObservation } from "./vm-bandwidth-qos.ts";

/** A VM port: an OVS Interface that libvirt (or the lab, acting as hypervisor) marked with the guest's MAC. */
export interface VmPort {
  port: string;
  ofport: number;
  /** `external_ids:attached-mac`, lowercase. */
  mac: string;
  /** `external_ids:port-profile`: libvirt copies a portgroup's virtualport profileid there. */
  profile?: string;
}

/** What the policy of one VM bridge looks at: its VM ports, the uplink's ofport, its rules and the network's leases. */
export interface VmPortObservation {
  bridgeExists: boolean;
  vmPorts: VmPort[];
  uplinkOfport?: number;
  /** Every rule of the bridge's table 0, whoever installed it (any cookie). */
  flows: Flow[];
  /** DHCP leases the backend holds on this network, still valid when observed. */
  leases?: Lease[];
  /** Why the leases file could not be used (the pass goes on without leases). */
  leasesProblem?: string;
  /** The bridge's OpenFlow meters (egress limits, vm-bandwidth.ts); undefined when they could not be read. */
  meters?: Meter[];
  /** Why `ovs-ofctl dump-meters` failed. */
  metersProblem?: string;
  /** Port qos column, QoS and Queue tables (ingress limits, vm-bandwidth-qos.ts); undefined in older observations. */
  qos?: QosObservation;
}

/** The Ethernet broadcast address, as ovs-ofctl writes it. */
export const BROADCAST = "ff:ff:ff:ff:ff:ff";

/**
 * Two tables, no NORMAL action and no MAC learning on a VM bridge: table 0
 * decides what may enter, table 1 where it goes. Every local destination is
 * a VM port the agent has vetted (it knows its MAC); anything else is behind
 * the uplink. A port the agent has not seen yet is no destination at all: no
 * flood, broadcast or unicast reaches it before its rules exist.
 *
 * Priorities of table 0 (higher wins; OpenFlow 1.3 §5.3):
 *  - 300 guards: DHCP server replies (udp sport 67) and all IPv6 (router advertisements, DHCPv6) from a VM port;
 *  - 290 DHCP client messages of the VM's MAC (udp 68→67) to broadcast or the gateway, from any source
 *        address (0.0.0.0, its lease, its previous address), straight out of the uplink;
 *  - 230 the gateway's broadcasts from the uplink: forwarded, and copied to the isolated ports;
 *  - 225 broadcasts of an isolated VM of another host, from the uplink: only to its cluster group here;
 *  - 220 isolated VMs and cluster groups: to the gateway and group members only; unicast to an isolated VM
 *        from the gateway or a group member;
 *  - 215 any other unicast to an isolated VM: dropped, whatever port it comes from;
 *  - 210 a VM's own MAC with one of its addresses (IP and ARP), and its RARP announcements: to table 1;
 *  - 200 anything else from a VM port: dropped (spoofed MAC or IP, other ethertypes);
 *  - 100 the uplink: to table 1;
 *  -   0 everything else (the bridge's local port, a port without policy yet): dropped.
 * Table 1:
 *  - 100 unicast to a vetted non-isolated VM port here: to it;
 *  -  50 broadcast and multicast: out of the uplink and to every vetted non-isolated port here;
 *  -   0 any other unicast: out of the uplink (OpenFlow never sends a frame back out of its in_port,
 *        so unknown unicast from the uplink ends here).
 */
export const FORWARD = { known: 100, multicast: 50, remote: 0 } as const;
const MULTICAST = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00";
const TO_FORWARDING = "goto_table:1";

/** Table 0 priorities, as listed above. */
export const PRIORITY = { guard: 300, dhcpClient: 290, gatewayBroadcast: 230, remoteIsolatedBroadcast: 225, isolated: 220, toIsolated: 215, own: 210, portDrop: 200, uplink: 100, floor: 0 } as const;

/** libvirt portgroup `isolated` sets this profileid; a port carrying it is isolated whatever the inventory says. */
export const ISOLATED_PROFILE = "netfleet-isolated";

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
      if (!iface || !mac || iface.ofport === undefined || iface.ofport <= 0) continue;
      const vm: VmPort = { port: iface.name, ofport: iface.ofport, mac: mac.toLowerCase() };
      const profile = iface.externalIds["port-profile"];
      if (profile) vm.profile = profile;
      out.push(vm);
    }
  }
  return out.sort((a, b) => a.ofport - b.ofport);
}

/** What the policy of one port is made of: who it is, which addresses it may use, whether it is isolated. */
export interface PortPolicy {
  port: VmPort;
  isolated: boolean;
  /** Sorted, unique: static ip, leased addresses, extra addresses. */
  sources: string[];
  /** Of `sources`, those that come from a lease only (a DHCP VM's address, a static VM's previous one). */
  leased: string[];
  groups: string[];
}

function uniqueSorted(values: Iterable<string>): string[] {
  return [...new Set(values)].sort();
}

/**
 * Each VM port's policy: a MAC the inventory does not know is a DHCP VM of
 * the network (its leases only); a port whose profile is the isolated
 * portgroup's is isolated whatever the inventory says.
 */
export function portPolicies(spec: VmPortPolicySpec, obs: Pick<VmPortObservation, "vmPorts" | "leases">): PortPolicy[] {
  return obs.vmPorts.map((port) => {
    const vm = spec.vms.find((v) => v.mac.toLowerCase() === port.mac);
    const leased = (obs.leases ?? []).filter((l) => l.mac === port.mac).map((l) => l.ip);
    const fixed = [...(vm?.ip ? [vm.ip] : []), ...(vm?.extraAddresses ?? [])];
    const sources = uniqueSorted([...fixed, ...leased]).filter((a) => a !== spec.gateway.ip);
    const isolated = (spec.isolatedProfile !== undefined && port.profile === spec.isolatedProfile) || (vm?.isolated ?? spec.isolatedDefault);
    return { port, isolated, sources, leased: uniqueSorted(leased.filter((a) => !fixed.includes(a) && a !== spec.gateway.ip)), groups: vm?.groups ?? [] };
  });
}

/**
 * The whole table 0 of one VM bridge (fail_mode=secure), from the VM ports
 * that exist right now and the leases they hold. See PRIORITY for the
 * layers. ARP and DHCP with the gateway need no static entries: the
 * gateway's broadcasts reach isolated ports through an explicit copy.
 * Sources: OVS fail_mode and NORMAL (ovs-vswitchd.conf.db(5)), ovs-fields(7)
 * for `rarp` (dl_type 0x8035, sent by QEMU after a migration), RFC 2131
 * (DHCP ports 67/68), RFC 4861 (router advertisements are ICMPv6).
 */
export function desiredFlows(spec: VmPortPolicySpec, obs: Pick<VmPortObservation, "vmPorts" | "uplinkOfport" | "leases" | "meters">): Flow[] {
  const flows: Flow[] = [{ priority: PRIORITY.floor, match: [], actions: "drop" }];
  const up = obs.uplinkOfport;
  if (up === undefined) return flows; // no way to the gateway: nothing but the floor
  const gw = spec.gateway;
  const upOut = `output:${up}`;
  flows.push({ priority: PRIORITY.uplink, match: [`in_port=${up}`], actions: TO_FORWARDING });
  const policies = portPolicies(spec, obs);
  const isolatedPorts = policies.filter((p) => p.isolated).map((p) => p.port.ofport);
  if (isolatedPorts.length > 0) {
    flows.push({ priority: PRIORITY.gatewayBroadcast, match: [`in_port=${up}`, `dl_src=${gw.mac}`, `dl_dst=${BROADCAST}`], actions: [...isolatedPorts.map((p) => `output:${p}`), TO_FORWARDING].join(",") });
  }
  // Table 1: where a frame that table 0 let in goes.
  const open = policies.filter((p) => !p.isolated).sort((a, b) => a.port.ofport - b.port.ofport);
  flows.push({ table: 1, priority: FORWARD.remote, match: [], actions: upOut });
  flows.push({ table: 1, priority: FORWARD.multicast, match: [MULTICAST], actions: [upOut, ...open.map((p) => `output:${p.port.ofport}`)].join(",") });
  for (const p of open) flows.push({ table: 1, priority: FORWARD.known, match: [`dl_dst=${p.port.mac}`], actions: `output:${p.port.ofport}` });
  // Group members: by MAC, wherever they run (a member on another host is reached through the uplink).
  const members = new Map<string, string[]>(); // group -> member MACs
  for (const vm of spec.vms) for (const g of vm.groups ?? []) members.set(g, [...(members.get(g) ?? []), vm.mac.toLowerCase()]);
  const localPortOf = new Map(obs.vmPorts.map((p) => [p.mac, p.ofport]));
  const peersOf = (groups: string[], self: string) => uniqueSorted(groups.flatMap((g) => members.get(g) ?? [])).filter((m) => m !== self);
  const localPeers = (groups: string[], self: string) => peersOf(groups, self).flatMap((m) => (localPortOf.has(m) ? [localPortOf.get(m)!] : [])).sort((a, b) => a - b);

  for (const p of policies) {
    const inPort = `in_port=${p.port.ofport}`;
    const mac = p.port.mac;
    const src = `dl_src=${mac}`;
    flows.push({ priority: PRIORITY.guard, match: ["udp", inPort, "tp_src=67"], actions: "drop" });
    flows.push({ priority: PRIORITY.guard, match: ["ipv6", inPort], actions: "drop" });
    for (const dst of [BROADCAST, gw.mac]) {
      flows.push({ priority: PRIORITY.dhcpClient, match: ["udp", inPort, src, `dl_dst=${dst}`, "tp_src=68", "tp_dst=67"], actions: upOut });
    }
    flows.push({ priority: PRIORITY.portDrop, match: [inPort], actions: "drop" });
    const ipOf = (a: string) => ["ip", inPort, src, `nw_src=${a}`];
    const arpOf = (a: string) => ["arp", inPort, src, `arp_sha=${mac}`, `arp_spa=${a}`];
    const peers = peersOf(p.groups, mac);
    // To each group member, by its MAC: its port here, or the uplink.
    for (const peer of peers) {
      const out = localPortOf.has(peer) ? `output:${localPortOf.get(peer)}` : upOut;
      for (const a of p.sources) {
        flows.push({ priority: PRIORITY.isolated, match: [...ipOf(a), `dl_dst=${peer}`], actions: out });
        flows.push({ priority: PRIORITY.isolated, match: [...arpOf(a), `dl_dst=${peer}`], actions: out });
      }
      // Unicast from a member on another host.
      flows.push({ priority: PRIORITY.isolated, match: [`in_port=${up}`, `dl_src=${peer}`, `dl_dst=${mac}`], actions: `output:${p.port.ofport}` });
    }
    if (!p.isolated) {
      for (const a of p.sources) {
        flows.push({ priority: PRIORITY.own, match: ipOf(a), actions: TO_FORWARDING });
        flows.push({ priority: PRIORITY.own, match: arpOf(a), actions: TO_FORWARDING });
      }
      flows.push({ priority: PRIORITY.own, match: ["rarp", inPort, src], actions: TO_FORWARDING });
      continue;
    }
    // Isolated: the gateway (and group members) only, straight out of the uplink.
    const bcastOut = [upOut, ...localPeers(p.groups, mac).map((o) => `output:${o}`)].join(",");
    for (const a of p.sources) {
      flows.push({ priority: PRIORITY.isolated, match: [...ipOf(a), `dl_dst=${gw.mac}`], actions: upOut });
      flows.push({ priority: PRIORITY.isolated, match: [...arpOf(a), `dl_dst=${gw.mac}`], actions: upOut });
      // ARP requests (for the gateway, a group member) and gratuitous ARP after a migration.
      flows.push({ priority: PRIORITY.isolated, match: [...arpOf(a), `dl_dst=${BROADCAST}`], actions: bcastOut });
    }
    flows.push({ priority: PRIORITY.isolated, match: ["rarp", inPort, src], actions: upOut });
    flows.push({ priority: PRIORITY.isolated, match: [`in_port=${up}`, `dl_src=${gw.mac}`, `dl_dst=${mac}`], actions: `output:${p.port.ofport}` });
    flows.push({ priority: PRIORITY.toIsolated, match: [`dl_dst=${mac}`], actions: "drop" });
  }
  // Broadcasts of isolated VMs of the inventory that arrive from other hosts: only their group members here see them.
  for (const vm of spec.vms) {
    const mac = vm.mac.toLowerCase();
    if (!vm.isolated || localPortOf.has(mac)) continue;
    const local = localPeers(vm.groups ?? [], mac);
    flows.push({ priority: PRIORITY.remoteIsolatedBroadcast, match: [`in_port=${up}`, `dl_src=${mac}`, `dl_dst=${BROADCAST}`], actions: local.length > 0 ? local.map((o) => `output:${o}`).join(",") : "drop" });
  }
  // What a limited VM sends passes its meter first (vm-bandwidth.ts); only when the bridge's meters could be read.
  return meteredFlows(dedupe(flows), obs.meters === undefined ? [] : desiredMeters(spec, obs.vmPorts));
}

function dedupe(flows: Flow[]): Flow[] {
  const seen = new Map<string, Flow>();
  for (const f of flows) if (!seen.has(flowKey(f))) seen.set(flowKey(f), f);
  return [...seen.values()];
}

/**
 * The RARP frame QEMU sends to announce a guest after a live migration
 * (qemu_announce_self: broadcast, ethertype 0x8035, opcode 3 "reverse
 * request", sender and target hardware address the guest's MAC, addresses
 * 0.0.0.0; RFC 903), padded to the 60-byte Ethernet minimum, as hex for
 * `ovs-ofctl packet-out`.
 */
export function rarpAnnounce(mac: string): string {
  const m = mac.toLowerCase().split(":").join("");
  const frame = `ffffffffffff${m}8035` + `0001080006040003${m}00000000${m}00000000`;
  return frame.padEnd(120, "0");
}

/** `<runDir>/leases/<network>.json`: the leases the fleet side last received from the backend. */
export function leasesPath(runDir: string, network: string): string {
  return join(runDir, "leases", `${network}.json`);
}

/**
 * Whether adding a desired rule is drift (someone removed or changed it) or
 * lifecycle (a VM port appeared, a lease or a group peer came): the
 * baseline, and any rule of a port that already had rules, is drift unless
 * it depends on a lease.
 */
function additionIsDrift(f: Flow, portsWithFlows: Set<number>, leased: Set<string>): boolean {
  if (f.table === 1) return f.priority !== FORWARD.known; // the forwarding baseline; a port's own entry is lifecycle
  if (f.priority === PRIORITY.floor || f.priority === PRIORITY.uplink) return true;
  const field = (name: string) => f.match.find((m) => m.startsWith(`${name}=`))?.slice(name.length + 1);
  const inPort = field("in_port");
  if (inPort === undefined || !portsWithFlows.has(Number(inPort))) return false;
  const addr = field("nw_src") ?? field("arp_spa");
  return addr === undefined || !leased.has(addr);
}

/**
 * ObserveContext.carry key prefix (then the bridge's name): true when this
 * daemon's last `dump-meters` of the bridge listed no meter. A bridge's
 * meters are only made by add-meter: ours when a VM there has an egress
 * limit (then they are always read), anyone's is named by a rule (which
 * dump-flows shows, and then they are read). So while none is wanted, no
 * rule names one and the last read found none, the bridge has none to
 * plan for and `dump-meters` is skipped (one ovs-ofctl per bridge a pass).
 * A meter nobody's rule names is not ours and changes no traffic.
 */
const METERS_NONE = "vm-port-policy:meters-none:";

/** Whether a rule's actions pass a meter (`meter:N`, OpenFlow 1.3 as ovs-ofctl prints it). */
const namesMeter = (f: Flow) => /(^|,)meter:\d+/.test(f.actions);

/** Rules whose actions name ports (copies to isolated ports, a group peer here or through the uplink): they follow VM starts and stops. */
const PORT_DEPENDENT_ACTIONS: ReadonlySet<number> = new Set([PRIORITY.isolated, PRIORITY.gatewayBroadcast, PRIORITY.remoteIsolatedBroadcast]);

/**
 * OpenFlow rules for the VM ports of one VM bridge, which runs in OVS's
 * secure fail mode: the agent owns the bridge's whole table 0. A rule it
 * did not install (any cookie) is removed and a missing one restored in the
 * same pass.
 */
export const vmPortPolicy: ResourceHandler<VmPortPolicySpec, VmPortObservation> = {
  kind: "vm-port-policy",
  // Another bridge's rules, flood bits or announcements change nothing this bridge's observation holds.
  unaffectedBy: (spec, applied) => applied.kind === "vm-port-policy" && applied.name !== spec.name,
  async observe(spec, ctx: ObserveContext) {
    const state = await observeOvs(ctx);
    if (!state.bridges.has(spec.name)) return { bridgeExists: false, vmPorts: [], flows: [] };
    const vmPorts = vmPortsOf(state, spec.name);
    // The meters are read unless this daemon knows the bridge has none (metersKnownNone); then the
    // rules are read first, as they decide it.
    const known = ctx.carry?.get(`${METERS_NONE}${spec.name}`) === true && !spec.vms.some((v) => v.bandwidth?.egress);
    const dumpMeters = () => ctx.read(ctx.tools.ovsOfctl("dump-meters", spec.name), { allowFailure: true });
    const [dump, leaseText, early, qos] = await Promise.all([
      ctx.read(ctx.tools.ovsOfctl("dump-flows", spec.name, "--no-stats")),
      spec.leaseSource !== undefined ? ctx.readFile(leasesPath(ctx.tools.runDir, spec.network)) : Promise.resolve(undefined),
      known ? Promise.resolve(undefined) : dumpMeters(),
      observeQos(ctx),
    ]);
    const uplink = state.interfaces.get(spec.uplinkPort)?.ofport;
    const obs: VmPortObservation = { bridgeExists: true, vmPorts, flows: parseFlows(dump.stdout), qos };
    const meterDump = early ?? (obs.flows.some(namesMeter) ? await dumpMeters() : undefined);
    if (meterDump === undefined) obs.meters = [];
    else if (meterDump.exitCode === 0) obs.meters = parseMeters(meterDump.stdout);
    else obs.metersProblem = meterDump.stderr.trim().split("\n")[0] || `ovs-ofctl dump-meters exited ${meterDump.exitCode}`;
    if (meterDump !== undefined) ctx.carry?.set(`${METERS_NONE}${spec.name}`, obs.meters !== undefined && obs.meters.length === 0);
    if (uplink !== undefined && uplink > 0) obs.uplinkOfport = uplink;
    if (leaseText !== undefined) {
      try {
        const table = decodeNetworkLeases(leasesPath(ctx.tools.runDir, spec.network), leaseText);
        obs.leases = table.network === spec.network && table.host === spec.leaseSource ? liveLeases(table.leases, Math.floor(Date.now() / 1000)) : [];
        if (table.network !== spec.network || table.host !== spec.leaseSource) obs.leasesProblem = `leases file is for ${table.network} from ${table.host}, not ${spec.network} from ${spec.leaseSource}`;
      } catch (err) {
        obs.leases = [];
        obs.leasesProblem = (err as Error).message;
      }
    }
    return obs;
  },
  absent: () => ({ bridgeExists: false, vmPorts: [], flows: [], meters: [], qos: emptyQos() }),
  // A renewed lease has a later expiry: which addresses are leased to which MAC is what the rules depend on.
  stable: (obs, spec) => ({
    ...obs,
    ...(obs.leases ? { leases: obs.leases.map((l) => `${l.mac} ${l.ip}`).sort() } : {}),
    ...(obs.qos ? { qos: stableQos(obs.qos, spec.name, obs.vmPorts.map((p) => p.port)) } : {}),
  }),
  plan(spec, obs, ctx): ResourcePlan {
    if (!obs.bridgeExists) return { changes: {}, commands: [] };
    const want = desiredFlows(spec, obs);
    const cookie = spec.cookie;
    const have = new Map(obs.flows.map((f) => [flowKey(f), f]));
    const wanted = new Map(want.map((f) => [flowKey(f), f]));
    const lines: string[] = [];
    const added: string[] = [];
    const removed: string[] = [];
    const foreign: string[] = [];
    const policies = portPolicies(spec, obs);
    const uplinkPort = obs.uplinkOfport;
    const portsWithFlows = new Set(
      obs.flows.filter((f) => f.cookie === cookie).flatMap((f) => f.match.filter((m) => m.startsWith("in_port=")).map((m) => Number(m.slice(8)))).filter((p) => p !== uplinkPort),
    );
    const leased = new Set(policies.flatMap((p) => p.leased));
    let drift = false;
    for (const [key, f] of wanted) {
      const h = have.get(key);
      if (h && h.actions === f.actions && h.cookie === cookie) continue;
      lines.push(`add cookie=${cookie},${matchText(f)},actions=${f.actions}`);
      added.push(formatFlow(f));
      if (h && h.cookie !== cookie) foreign.push(`${formatFlow(h)} (cookie ${h.cookie ?? "0x0"})`);
      const portDependent = f.table === 1 ? f.priority === FORWARD.multicast : PORT_DEPENDENT_ACTIONS.has(f.priority);
      if (h ? h.cookie !== cookie || !portDependent : additionIsDrift(f, portsWithFlows, leased)) drift = true;
    }
    for (const [key, f] of have) {
      if (wanted.has(key)) continue;
      // Strict delete without a cookie mask: whoever installed it, it goes.
      lines.push(`delete_strict ${matchText(f)}`);
      removed.push(formatFlow(f));
      if (f.cookie !== cookie) foreign.push(`${formatFlow(f)} (cookie ${f.cookie ?? "0x0"})`);
      // Our own rules go when their port, lease or peer goes; anyone else's rule is drift.
      if (f.cookie !== cookie) drift = true;
    }
    const commands: Command[] = [];
    const changes: Changes = {};
    if (lines.length > 0) {
      changes.flows = { old: removed, new: added };
      if (foreign.length > 0) changes.foreign = { old: foreign, new: null };
      // One bundle: all rules of the bridge change together or not at all.
      commands.push(mutate(ctx.tools.ovsOfctlBundle(spec.name), lines.join("\n") + "\n"));
      // A port that just got its rules (a VM started or migrated in): announce its MAC out of the
      // uplink once the rules are in, as QEMU does after a migration, so that the switches learn
      // its new place even when the guest's own announcements came before its rules (and were dropped).
      const fresh = policies.filter((p) => !portsWithFlows.has(p.port.ofport));
      if (uplinkPort !== undefined && fresh.length > 0) {
        for (const p of fresh) commands.push(mutate(ctx.tools.ovsOfctl("packet-out", spec.name, `in_port=controller packet=${rarpAnnounce(p.port.mac)} actions=output:${uplinkPort}`)));
        changes.announced = { old: null, new: fresh.map((p) => p.port.mac) };
      }
    }
    // Bandwidth (vm-bandwidth-plan.ts): meters before the bundle that names them, their deletion and the QoS after.
    const bw = planBandwidth(spec, obs, ctx, portsWithFlows);
    commands.unshift(...bw.before);
    commands.push(...bw.after);
    Object.assign(changes, bw.changes);
    if (bw.drift) drift = true;
    const notes = [...(obs.leasesProblem ? [`leases not used: ${obs.leasesProblem}`] : []), ...bw.notes];
    if (commands.length === 0) return notes.length > 0 ? { changes, commands, comment: notes.join("; ") } : { changes, commands };
    const plan: ResourcePlan = { changes, commands, ...(lines.length > 0 ? { diff: flowsDiff(spec.name, obs.vmPorts, obs.flows, want, cookie) } : {}) };
    if (notes.length > 0) plan.comment = notes.join("; ");
    // A VM that started or stopped, or a lease that came or ended, is lifecycle, not drift.
    if (!drift) plan.lifecycle = true;
    else {
      // What was found, for the report: the rules that were not ours, and how many of ours were missing.
      const parts: string[] = [];
      if (foreign.length > 0) parts.push(`${foreign.length} rule(s) not installed by netfleet: ${foreign.slice(0, 3).join("; ")}${foreign.length > 3 ? "; ..." : ""}`);
      if (added.length > 0) parts.push(`${added.length} rule(s) restored`);
      if (bw.drift) parts.push("bandwidth limits of a running VM's port set");
      plan.comment = [`drift: ${parts.join("; ")}`, ...notes].join("; ");
    }
    return plan;
  },
};

/** For tests and `plan`: the rules as one text, in the bundle's order. */
export function describeFlows(flows: Flow[]): string[] {
  return flows.map((f) => `${f.table ? `${f.table}:` : ""}${f.priority} ${f.match.join(",")} ${f.actions}`);
}

