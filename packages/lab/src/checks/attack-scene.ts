/**
 * The cast of the attack rows, picked from the inventory and `lab status`:
 * who sends, who is the target, which addresses nobody holds, and the frame
 * and capture-filter builders every family of rows shares.
 */
import { intToIpv4, ipv4ToInt, type Inventory } from "@netfleet/shared";
import { netnsExec } from "../exec.ts";
import type { LabGateway, LabStatus, LabVm } from "../types.ts";
import { unusedAddress } from "./addresses.ts";
import type { AttackProbe, CapturePoint, Control, Frame, Sender } from "./attack-types.ts";

/** The argv of a command run inside a lab namespace (`ip netns exec`); see {@link netnsExec}. */
export const inNs = netnsExec;

/** Where to capture what reaches a VM: its namespace and the interface that stands for its NIC. */
export function vmPoint(vm: LabVm): CapturePoint {
  return { name: vm.name, namespace: vm.namespace, iface: vm.interface };
}

/** Where to capture what reaches a network's gateway: the backend namespace's `gw-<network>` interface. */
export function gwPoint(gw: LabGateway): CapturePoint {
  return { name: `gw-${gw.network}`, namespace: gw.namespace, iface: gw.interface };
}

/** A VM as the sender of crafted frames: its NIC, MAC and address (0.0.0.0 while it holds no lease). */
export function vmSender(vm: LabVm): Sender {
  return { name: vm.name, namespace: vm.namespace, iface: vm.interface, mac: vm.mac, ip: vm.ip ?? "0.0.0.0" };
}

/** A network's gateway as the sender of crafted frames (named `gw-<network>`). */
export function gwSender(gw: LabGateway): Sender {
  return { name: `gw-${gw.network}`, namespace: gw.namespace, iface: gw.interface, mac: gw.mac, ip: gw.ip };
}

/** The Ethernet broadcast address. */
export const BROADCAST = "ff:ff:ff:ff:ff:ff";

/** A row where `sender` broadcasts an ARP request for `target`'s address and `target`'s port is watched for it; no controls. */
export function arpRequestRow(check: string, sender: Sender, target: LabVm, expect: AttackProbe["expect"]): AttackProbe {
  return {
    check,
    from: sender.name,
    to: target.name,
    expect,
    sender,
    frames: [{ kind: "arp", op: "request", src_mac: sender.mac, dst_mac: BROADCAST, sha: sender.mac, spa: sender.ip, tpa: target.ip! }],
    look: { at: [vmPoint(target)], filter: `arp and ether src ${sender.mac} and arp dst host ${target.ip}` },
    controls: [],
  };
}

/** What the families of rows share: the cast, fresh ports, the rows so far (`probes`, appended to) and the builders. */
export type Scene = ReturnType<typeof attackScene>;

/**
 * The cast of the attack rows for a lab (see inventories/lab): on the network that holds
 * the stranger namespaces (secure), the roles are picked from the inventory —
 * two static non-isolated VMs on different hosts, a DHCP VM, a stranger per
 * host, a cluster group of two isolated VMs on different hosts, an isolated
 * VM outside any group, and a virtual (extra) address shared by two VMs.
 * Rows whose roles the lab lacks are left out (the caller checks the count).
 * Addresses and MACs come from `status` (lab status), never from our config.
 */
export function attackScene(inventory: Inventory, status: LabStatus) {
  const strangers = status.vms.filter((v) => v.kind === "stranger" && v.ip);
  const netName = strangers[0]?.network ?? "secure";
  const net = inventory.networks.find((n) => n.name === netName);
  const gw = status.gateways?.find((g) => g.network === netName);
  if (!net || !gw) throw new Error(`the lab has no network ${netName} with a gateway on the backend (lab status lists none)`);
  const vms = status.vms.filter((v) => v.kind === "namespace" && v.network === netName && v.ip);
  const spec = (vm: LabVm) => net.vms.find((v) => v.name === vm.name);
  const isolated = (vm: LabVm) => spec(vm)?.isolated ?? net.isolated_ports;
  const groupsOf = (vm: LabVm) => spec(vm)?.groups ?? [];
  const statics = vms.filter((v) => spec(v)?.ip && !isolated(v));
  const staticA = statics[0];
  const staticB = statics.find((v) => staticA && v.host !== staticA.host);
  const dhcpVm = vms.find((v) => !spec(v)?.ip);
  const strangerA = strangers.find((s) => s.network === netName && s.host === staticA?.host);
  const strangerB = strangers.find((s) => s.network === netName && s.host === staticB?.host);
  const group = Object.entries(net.cluster_groups ?? {}).find(([, members]) => {
    const m = members.map((n) => vms.find((v) => v.name === n)).filter((v): v is LabVm => v !== undefined);
    return m.length >= 2 && new Set(m.map((v) => v.host)).size >= 2;
  });
  const members = group ? group[1].map((n) => vms.find((v) => v.name === n)!).filter(Boolean) : [];
  const m1 = members.find((v) => v.host === staticA?.host) ?? members[0];
  const m2 = members.find((v) => m1 && v.host !== m1.host);
  const lone = vms.find((v) => isolated(v) && groupsOf(v).length === 0);
  const extras = net.vms.flatMap((v) => v.extra_addresses ?? []);
  const vip = extras.find((a) => extras.filter((b) => b === a).length >= 2) ?? extras[0]; // a shared one when there is one
  const owners = vip ? vms.filter((v) => (spec(v)?.extra_addresses ?? []).includes(vip)) : [];
  const nonOwners = vms.filter((v) => !owners.includes(v));

  const taken = [gw.ip, ...status.vms.map((v) => v.ip ?? ""), ...net.vms.flatMap((v) => [v.ip ?? "", ...(v.extra_addresses ?? [])])];
  const nowhere = unusedAddress(net.cidr, taken, net.dhcp!.start); // outside the DHCP range, owned by nobody
  const inRange = unusedAddress(net.cidr, taken, intToIpv4(ipv4ToInt(net.dhcp!.end) + 1)); // a DHCP-range address nobody holds
  const unknownMac = "52:54:00:ee:ee:01";
  const foreign = (n: number) => `52:54:00:ee:00:${n.toString(16).padStart(2, "0")}`;

  let port = 41000;
  const nextPort = () => port++;
  const probes: AttackProbe[] = [];
  const gwAt = gwPoint(gw);
  const udpTo = (s: Sender, dst: { mac: string; ip: string }, dport: number, over: { srcMac?: string; srcIp?: string } = {}): Frame => ({
    kind: "udp",
    src_mac: over.srcMac ?? s.mac,
    dst_mac: dst.mac,
    src_ip: over.srcIp ?? s.ip,
    dst_ip: dst.ip,
    dport,
  });
  const udpSeen = (src: string, dport: number) => `udp and dst port ${dport} and src host ${src}`;
  const garp = (s: Sender, ip: string): Frame => ({ kind: "arp", op: "request", src_mac: s.mac, dst_mac: BROADCAST, sha: s.mac, spa: ip, tpa: ip });
  const arpSeen = (mac: string, spa: string) => `arp and ether src ${mac} and arp src host ${spa}`;
  const gwDst = { mac: gw.mac, ip: gw.ip };
  const dst = (vm: LabVm) => ({ mac: vm.mac, ip: vm.ip! });
  /** The sender's own, legitimate datagram to the gateway, seen there. */
  const ownToGateway = (s: Sender, p: number): Control => ({ what: `${s.name}'s own datagram to the gateway`, frames: [udpTo(s, gwDst, p)], look: { at: [gwAt], filter: udpSeen(s.ip, p) } });
  /** The gateway's datagram to `vm`, seen there: the target's port and capture work. */
  const gatewayTo = (vm: LabVm, p: number): Control => ({
    what: `the gateway's datagram to ${vm.name}`,
    from: gwSender(gw),
    frames: [udpTo(gwSender(gw), dst(vm), p)],
    look: { at: [vmPoint(vm)], filter: udpSeen(gw.ip, p) },
  });
  /** A claimed identity: the gateway's address, or a VM's. */
  const asGw = { name: `gw ${gw.ip}`, ip: gw.ip };
  const asVm = (vm: LabVm | undefined) => (vm ? { name: `${vm.name} ${vm.ip}`, ip: vm.ip! } : undefined);
  /** Where a frame to `target` goes (its MAC and address) and where it is looked for. */
  const aim = (target: LabVm | "gateway") => (target === "gateway" ? { to: gwDst, at: gwAt } : { to: dst(target), at: vmPoint(target) });
  return { gw, asGw, asVm, aim, vms, isolated, staticA, staticB, dhcpVm, strangerA, strangerB, members, m1, m2, lone, vip, owners, nonOwners, nowhere, inRange, unknownMac, foreign, nextPort, probes, gwAt, udpTo, udpSeen, garp, arpSeen, gwDst, dst, ownToGateway, gatewayTo };
}
