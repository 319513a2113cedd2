/**
 * The attack tier of the lab (`netfleet lab attack`): crafted frames sent
 * from VM namespaces by a hostile guest's means (scapy, attack.py beside
 * this file) and looked for where they would land — a tcpdump capture in
 * the target VM's namespace, on the backend's gateway interface, or the
 * target's neighbour table. Every row carries a positive control (the
 * legitimate frame of the same kind, from the same VM and interface, seen
 * at the same target, or the gateway's own frame reaching the target), so
 * no row passes because everything is broken, and every wait is bounded.
 * Method: ../shared/design/attack-tier.md; the kinds follow Neutron/OVN
 * port security (MAC/IP/ARP spoofing, DHCP and RA guards, allowed address
 * pairs) and private-VLAN semantics (no flood into isolated ports).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import PQueue from "p-queue";
import { cidrContains, intToIpv4, ipv4ToInt, parseIpv4Cidr, type Inventory, type Ipv4Cidr } from "@netfleet/shared";
import { LabExec, netnsExec, sleep } from "../lab/exec.ts";
import type { LabGateway, LabStatus, LabVm } from "../lab/types.ts";

/** The frame builder, run as `ip netns exec NS /usr/bin/python3 attack.py IFACE COUNT INTERVAL_MS FRAME...`. */
export const ATTACK_PY = join(dirname(fileURLToPath(import.meta.url)), "attack.py");
/** Debian's interpreter, which python3-scapy installs for (a pyenv or venv python3 on PATH would lack it). */
export const PYTHON = "/usr/bin/python3";

/**
 * One frame for attack.py, as JSON: `kind` picks the builder, the other
 * fields are its arguments (MACs as aa:bb:.., IPv4 dotted quads, ports).
 */
export type Frame =
  | { kind: "udp"; src_mac: string; dst_mac: string; src_ip: string; dst_ip: string; dport: number; sport?: number }
  | { kind: "arp"; op: "request" | "reply"; src_mac: string; dst_mac: string; sha: string; spa: string; tpa: string; tha?: string }
  | { kind: "dhcp-offer"; src_mac: string; dst_mac: string; src_ip: string; yiaddr: string; chaddr: string; xid?: number }
  | { kind: "ra"; src_mac: string; prefix?: string }
  | { kind: "dhcpv6-advertise"; src_mac: string }
  | { kind: "rarp"; src_mac: string; sha?: string };

/** Who sends: a VM namespace (or the backend's gateway interface) with its own MAC and address. */
export interface Sender {
  name: string;
  namespace: string;
  iface: string;
  mac: string;
  ip: string;
}

/** Where a frame is looked for: tcpdump on one interface of one namespace, inbound frames only. */
export interface CapturePoint {
  name: string;
  namespace: string;
  iface: string;
}

/** Frames matching a pcap-filter(7) expression, counted over one or more capture points. */
export interface Look {
  at: CapturePoint[];
  filter: string;
}

/** A positive control: legitimate frames (or a command such as a DHCP exchange) that must be seen. */
export interface Control {
  what: string;
  /** Frames sent by `from` (default: the row's sender, before its attack frames). */
  frames?: Frame[];
  from?: Sender;
  /** Or a command run meanwhile (argv, e.g. a DHCP client in the target). */
  run?: string[];
  look: Look;
}

/** A neighbour entry the attack must not change: in `namespace`, `ip` on `dev` must stay at `mac`. */
export interface NeighbourWatch {
  name: string;
  namespace: string;
  dev: string;
  ip: string;
  mac: string;
}

/** One attack row, before it runs. */
export interface AttackProbe {
  check: string;
  from: string;
  to: string;
  /** `dropped`: the attack must not be seen; `delivered`: the frame is legitimate and must be seen. */
  expect: "dropped" | "delivered";
  sender: Sender;
  frames: Frame[];
  look: Look;
  controls: Control[];
  neighbour?: NeighbourWatch;
  /** Rows that can change shared state (neighbour tables, switch MAC tables, DHCP exchanges) run alone. */
  exclusive?: boolean;
  /** Frames sent after the row to undo what a leaked attack taught switches (e.g. the real owner's gratuitous ARP). */
  restore?: { from: Sender; frames: Frame[] }[];
}

/**
 * One row of `netfleet lab attack`, shaped like a `lab check` row.
 * got: `dropped` / `delivered` (what happened to the attack frame);
 * `unproven` when the attack was not seen but a control was missing (the row
 * cannot tell policy from breakage); `error` when a tool failed.
 */
export interface AttackRow {
  check: string;
  from: string;
  to: string;
  expect: "dropped" | "delivered";
  got: "dropped" | "delivered" | "unproven" | "error";
  ok: boolean;
  detail?: string;
}

const inNs = netnsExec;

function vmPoint(vm: LabVm): CapturePoint {
  return { name: vm.name, namespace: vm.namespace, iface: vm.interface };
}

function gwPoint(gw: LabGateway): CapturePoint {
  return { name: `gw-${gw.network}`, namespace: gw.namespace, iface: gw.interface };
}

function vmSender(vm: LabVm): Sender {
  return { name: vm.name, namespace: vm.namespace, iface: vm.interface, mac: vm.mac, ip: vm.ip ?? "0.0.0.0" };
}

function gwSender(gw: LabGateway): Sender {
  return { name: `gw-${gw.network}`, namespace: gw.namespace, iface: gw.interface, mac: gw.mac, ip: gw.ip };
}

const BROADCAST = "ff:ff:ff:ff:ff:ff";

/** An address of `cidr` that is neither in `taken` nor the network/broadcast address, searched from the top. */
function unusedAddress(cidrText: string, taken: string[], below?: string): string {
  const cidr = parseIpv4Cidr(cidrText) as Ipv4Cidr;
  const used = new Set(taken.filter(Boolean).map(ipv4ToInt));
  const top = below ? ipv4ToInt(below) - 1 : cidr.last - 1;
  for (let n = top; n > cidr.first; n--) if (!used.has(n) && cidrContains(cidr, n)) return intToIpv4(n);
  throw new Error(`no free address in ${cidrText}`);
}

/**
 * The attack rows for a lab (see inventories/lab): on the network that holds
 * the stranger namespaces (secure), the roles are picked from the inventory —
 * two static non-isolated VMs on different hosts, a DHCP VM, a stranger per
 * host, a cluster group of two isolated VMs on different hosts, an isolated
 * VM outside any group, and a virtual (extra) address shared by two VMs.
 * Rows whose roles the lab lacks are left out (the caller checks the count).
 * Addresses and MACs come from `status` (lab status), never from our config.
 */
export function attackProbes(inventory: Inventory, status: LabStatus): AttackProbe[] {
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
  const nowhere = unusedAddress(net.cidr, taken, net.dhcp.start); // outside the DHCP range, owned by nobody
  const inRange = unusedAddress(net.cidr, taken, intToIpv4(ipv4ToInt(net.dhcp.end) + 1)); // a DHCP-range address nobody holds
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

  // --- IP spoofing: a claimed source address (the gateway's, another VM's, an unleased one); control: own address
  const spoof = (kind: string, from: LabVm | undefined, claimed: { name: string; ip: string } | undefined, target: LabVm | "gateway" | undefined) => {
    if (!from || !claimed || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    const to = target === "gateway" ? gwDst : dst(target);
    const at = target === "gateway" ? gwAt : vmPoint(target);
    probes.push({
      check: `ip spoofing (${kind})`,
      from: from.name,
      to: `${at.name} as ${claimed.name}`,
      expect: "dropped",
      sender: s,
      frames: [udpTo(s, to, p, { srcIp: claimed.ip })],
      look: { at: [at], filter: udpSeen(claimed.ip, p) },
      controls: [{ what: `own address ${s.ip}`, frames: [udpTo(s, to, p)], look: { at: [at], filter: udpSeen(s.ip, p) } }],
    });
  };
  const asGw = { name: `gw ${gw.ip}`, ip: gw.ip };
  const asVm = (vm: LabVm | undefined) => (vm ? { name: `${vm.name} ${vm.ip}`, ip: vm.ip! } : undefined);
  spoof("static VM", staticA, asGw, staticB);
  spoof("static VM", staticA, asVm(staticB), "gateway");
  spoof("DHCP VM", dhcpVm, asGw, staticA);
  spoof("DHCP VM", dhcpVm, asVm(staticA), "gateway");
  spoof("DHCP VM", dhcpVm, { name: `unleased ${inRange}`, ip: inRange }, "gateway");
  spoof("unknown MAC", strangerA, asGw, staticB);
  spoof("unknown MAC", strangerB, asVm(staticA), "gateway");
  spoof("unknown MAC", strangerA, asVm(dhcpVm), "gateway");
  spoof("isolated VM", lone, asVm(staticA), "gateway");

  // --- ARP claims: the attacker's MAC for someone else's address; the victim's neighbour entry must hold
  const neighOf = (vm: LabVm, ip: string, mac: string, name: string): NeighbourWatch => ({ name, namespace: vm.namespace, dev: vm.interface, ip, mac });
  const gwNeigh = (vm: LabVm): NeighbourWatch => ({ name: `gw-${gw.network}`, namespace: gw.namespace, dev: gw.interface, ip: vm.ip!, mac: vm.mac });
  const arpClaim = (kind: "gratuitous" | "unicast reply", from: LabVm | undefined, claimed: { name: string; ip: string } | undefined, target: LabVm | "gateway" | undefined, watch?: NeighbourWatch) => {
    if (!from || !claimed || !target) return;
    const s = vmSender(from);
    const at = target === "gateway" ? gwAt : vmPoint(target);
    const to = target === "gateway" ? gwDst : dst(target);
    const frame = (ip: string): Frame =>
      kind === "gratuitous" ? garp(s, ip) : { kind: "arp", op: "reply", src_mac: s.mac, dst_mac: to.mac, sha: s.mac, spa: ip, tpa: to.ip, tha: to.mac };
    probes.push({
      check: `arp claim (${kind})`,
      from: from.name,
      to: `${at.name} as ${claimed.name}`,
      expect: "dropped",
      sender: s,
      frames: [frame(claimed.ip)],
      look: { at: [at], filter: arpSeen(s.mac, claimed.ip) },
      controls: [{ what: `own address ${s.ip}`, frames: [frame(s.ip)], look: { at: [at], filter: arpSeen(s.mac, s.ip) } }],
      ...(watch ? { neighbour: watch } : {}),
      exclusive: true,
    });
  };
  if (staticA) arpClaim("gratuitous", dhcpVm, asGw, staticA, neighOf(staticA, gw.ip, gw.mac, staticA.name));
  if (staticA) arpClaim("gratuitous", dhcpVm, asVm(staticA), "gateway", gwNeigh(staticA));
  if (staticB) arpClaim("gratuitous", strangerA, asVm(staticB), "gateway", gwNeigh(staticB));
  if (staticB) arpClaim("gratuitous", staticA, asGw, staticB, neighOf(staticB, gw.ip, gw.mac, staticB.name));
  if (staticA) arpClaim("unicast reply", dhcpVm, asVm(staticA), "gateway", gwNeigh(staticA));
  if (staticB) arpClaim("unicast reply", strangerB, asGw, staticB, neighOf(staticB, gw.ip, gw.mac, staticB.name));
  if (staticB) arpClaim("unicast reply", staticA, asVm(staticB), "gateway", gwNeigh(staticB));
  arpClaim("gratuitous", lone, asGw, "gateway");

  // --- MAC spoofing: a frame with a source MAC that is not the port's; control: the same frame with its own MAC
  const macSpoof = (from: LabVm | undefined, claimed: { name: string; mac: string; ip?: string } | undefined, target: LabVm | "gateway" | undefined, restore?: { from: Sender; frames: Frame[] }) => {
    if (!from || !claimed || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    const to = target === "gateway" ? gwDst : dst(target);
    const at = target === "gateway" ? gwAt : vmPoint(target);
    probes.push({
      check: "mac spoofing",
      from: from.name,
      to: `${at.name} as ${claimed.name}`,
      expect: "dropped",
      sender: s,
      frames: [udpTo(s, to, p, { srcMac: claimed.mac, ...(claimed.ip ? { srcIp: claimed.ip } : {}) })],
      look: { at: [at], filter: `udp and dst port ${p} and ether src ${claimed.mac}` },
      controls: [{ what: `own MAC ${s.mac}`, frames: [udpTo(s, to, p)], look: { at: [at], filter: `udp and dst port ${p} and ether src ${s.mac}` } }],
      ...(restore ? { exclusive: true, restore: [restore] } : {}),
    });
  };
  macSpoof(staticA, { name: `unknown ${foreign(1)}`, mac: foreign(1) }, "gateway");
  if (staticA) macSpoof(dhcpVm, { name: `${staticA.name} ${staticA.mac}`, mac: staticA.mac, ip: staticA.ip! }, "gateway", { from: vmSender(staticA), frames: [garp(vmSender(staticA), staticA.ip!)] });
  macSpoof(strangerA, { name: `gw ${gw.mac}`, mac: gw.mac, ip: gw.ip }, staticA, { from: gwSender(gw), frames: [garp(gwSender(gw), gw.ip)] });

  // --- DHCP server guard: a rogue offer to a neighbour; control: that neighbour's fresh exchange with the real dnsmasq
  const rogueDhcp = (from: LabVm | undefined, victim: LabVm | undefined, broadcast: boolean) => {
    if (!from || !victim) return;
    const s = vmSender(from);
    probes.push({
      check: `rogue dhcp offer (${broadcast ? "broadcast" : "unicast"})`,
      from: from.name,
      to: victim.name,
      expect: "dropped",
      sender: s,
      frames: [{ kind: "dhcp-offer", src_mac: s.mac, dst_mac: broadcast ? BROADCAST : victim.mac, src_ip: s.ip, yiaddr: nowhere, chaddr: victim.mac }],
      look: { at: [vmPoint(victim)], filter: `udp src port 67 and ether src ${s.mac}` },
      controls: [
        {
          what: `${victim.name}'s DHCP exchange answered by the gateway`,
          run: inNs(victim.namespace, ["busybox", "udhcpc", "-i", victim.interface, "-f", "-q", "-n", "-t", "3", "-T", "1", "-A", "1", "-s", "/bin/true"]),
          look: { at: [vmPoint(victim)], filter: `udp src port 67 and ether src ${gw.mac}` },
        },
      ],
      exclusive: true,
    });
  };
  rogueDhcp(staticA, staticB, true);
  rogueDhcp(dhcpVm, staticB, false);

  // --- IPv6 guards: router advertisements and DHCPv6 server messages; control: the sender's IPv4 datagram to the same neighbour
  const v6 = (check: string, from: LabVm | undefined, target: LabVm | undefined, frame: (s: Sender) => Frame, filter: (mac: string) => string) => {
    if (!from || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    probes.push({
      check,
      from: from.name,
      to: target.name,
      expect: "dropped",
      sender: s,
      frames: [frame(s)],
      look: { at: [vmPoint(target)], filter: filter(s.mac) },
      controls: [{ what: `own IPv4 datagram to ${target.name}`, frames: [udpTo(s, dst(target), p)], look: { at: [vmPoint(target)], filter: udpSeen(s.ip, p) } }],
    });
  };
  const raSeen = (mac: string) => `icmp6 and ip6[40] == 134 and ether src ${mac}`;
  v6("ipv6 router advertisement", staticA, staticB, (s) => ({ kind: "ra", src_mac: s.mac }), raSeen);
  v6("ipv6 router advertisement", strangerB, staticB, (s) => ({ kind: "ra", src_mac: s.mac }), raSeen);
  v6("dhcpv6 advertise", dhcpVm, staticA, (s) => ({ kind: "dhcpv6-advertise", src_mac: s.mac }), (mac) => `ip6 and udp src port 547 and ether src ${mac}`);

  // --- isolation and cluster groups: unicast between VMs; controls: the sender reaches the gateway, the gateway reaches the target
  const unicast = (check: string, from: LabVm | undefined, target: LabVm | undefined, expect: "dropped" | "delivered") => {
    if (!from || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    const where = from.host === target.host ? "same host" : "across hosts";
    probes.push({
      check: `${check} (${where})`,
      from: from.name,
      to: target.name,
      expect,
      sender: s,
      frames: [udpTo(s, dst(target), p)],
      look: { at: [vmPoint(target)], filter: udpSeen(s.ip, p) },
      controls: expect === "dropped" ? [ownToGateway(s, p), gatewayTo(target, p)] : [],
    });
  };
  const loneSameHost = members.find((m) => lone && m.host === lone.host);
  const loneOtherHost = members.find((m) => lone && m.host !== lone.host);
  unicast("isolated to isolated", lone, loneSameHost, "dropped");
  unicast("isolated to isolated", lone, loneOtherHost, "dropped");
  unicast("cluster group member to member", m1, m2, "delivered");
  unicast("cluster group member to member", m2, m1, "delivered");
  unicast("cluster group member to non-member", loneSameHost, lone, "dropped");
  unicast("cluster group member to non-member", loneOtherHost, lone, "dropped");
  unicast("cluster group member to non-member", m1, staticB, "dropped");
  unicast("isolated to non-isolated", lone, staticA, "dropped");
  unicast("non-isolated to isolated", staticB, lone, "dropped");
  if (m1 && m2) {
    // a group peer must find its peer by ARP across hosts, without static entries
    const s = vmSender(m1);
    probes.push({
      check: "cluster group arp (across hosts)",
      from: m1.name,
      to: m2.name,
      expect: "delivered",
      sender: s,
      frames: [{ kind: "arp", op: "request", src_mac: s.mac, dst_mac: BROADCAST, sha: s.mac, spa: s.ip, tpa: m2.ip! }],
      look: { at: [vmPoint(m2)], filter: `arp and ether src ${s.mac} and arp dst host ${m2.ip}` },
      controls: [],
    });
  }
  if (lone && staticA && staticB) {
    // an isolated VM's broadcast ARP goes to the gateway only
    const s = vmSender(lone);
    const frame: Frame = { kind: "arp", op: "request", src_mac: s.mac, dst_mac: BROADCAST, sha: s.mac, spa: s.ip, tpa: staticA.ip! };
    const filter = `arp and ether src ${s.mac} and arp dst host ${staticA.ip}`;
    probes.push({
      check: "isolated broadcast arp",
      from: lone.name,
      to: `${staticA.name}, ${staticB.name}`,
      expect: "dropped",
      sender: s,
      frames: [frame],
      look: { at: [vmPoint(staticA), vmPoint(staticB)], filter },
      controls: [{ what: "the same request at the gateway", look: { at: [gwAt], filter } }, gatewayTo(staticA, nextPort())],
    });
  }
  if (lone) {
    const g = gwSender(gw);
    probes.push({
      check: "gateway broadcast to isolated",
      from: g.name,
      to: lone.name,
      expect: "delivered",
      sender: g,
      frames: [{ kind: "arp", op: "request", src_mac: g.mac, dst_mac: BROADCAST, sha: g.mac, spa: g.ip, tpa: lone.ip! }],
      look: { at: [vmPoint(lone)], filter: `arp and ether src ${g.mac} and arp dst host ${lone.ip}` },
      controls: [],
    });
  }

  // --- flooding into isolated ports: unknown unicast and broadcast from a non-isolated VM
  const isolatedOn = (host: string | undefined) => vms.filter((v) => isolated(v) && v.host === host);
  const isolatedAll = vms.filter(isolated);
  if (staticA) {
    const s = vmSender(staticA);
    const p = nextPort();
    const seeSame = isolatedOn(staticA.host);
    const flooded = [strangerA, staticB].filter((v): v is LabVm => v !== undefined);
    probes.push({
      // No VM bridge floods: unknown unicast leaves by the uplink only, and reaches no VM port on any host
      // (isolated or not); the switches flood it, so the gateway's interface sees it (the control).
      check: "unknown unicast flood to isolated",
      from: staticA.name,
      to: `${unknownMac} (${[...isolatedAll, ...flooded].map((v) => v.name).join(", ")})`,
      expect: "dropped",
      sender: s,
      frames: [udpTo(s, { mac: unknownMac, ip: nowhere }, p)],
      look: { at: [...isolatedAll, ...flooded].map(vmPoint), filter: udpSeen(s.ip, p) },
      controls: [
        { what: "the frame itself out of the uplink, where the switches flood it (at the gateway's interface)", look: { at: [gwAt], filter: udpSeen(s.ip, p) } },
        ownToGateway(s, nextPort()),
      ],
    });
    if (seeSame.length > 0) {
      const q = nextPort();
      probes.push({
        check: "broadcast to isolated",
        from: staticA.name,
        to: isolatedAll.map((v) => v.name).join(", "),
        expect: "dropped",
        sender: s,
        frames: [udpTo(s, { mac: BROADCAST, ip: "255.255.255.255" }, q)],
        look: { at: isolatedAll.map(vmPoint), filter: udpSeen(s.ip, q) },
        controls: [{ what: `the broadcast at non-isolated ${flooded.map((v) => v.name).join(", ")}`, look: { at: flooded.map(vmPoint), filter: udpSeen(s.ip, q) } }],
      });
    }
  }
  if (staticB && lone) {
    // unicast to an isolated VM of another host: the sender's host never learned that MAC and may flood it
    const s = vmSender(staticB);
    const p = nextPort();
    const here = isolatedOn(staticB.host);
    if (here.length > 0) {
      probes.push({
        check: "flood of unicast for a remote isolated VM",
        from: staticB.name,
        to: `${lone.mac} (${here.map((v) => v.name).join(", ")})`,
        expect: "dropped",
        sender: s,
        frames: [udpTo(s, dst(lone), p)],
        look: { at: here.map(vmPoint), filter: udpSeen(s.ip, p) },
        controls: [ownToGateway(s, p), ...here.map((v) => gatewayTo(v, p))],
      });
    }
  }

  // --- extra (virtual) addresses: the owners may use them, with their ARP; no other VM may
  if (vip) {
    for (const o of owners) {
      const s = vmSender(o);
      const p = nextPort();
      probes.push({
        check: "extra address (owner)",
        from: o.name,
        to: `gw-${gw.network} as ${vip}`,
        expect: "delivered",
        sender: s,
        frames: [udpTo(s, gwDst, p, { srcIp: vip })],
        look: { at: [gwAt], filter: udpSeen(vip, p) },
        controls: [],
      });
    }
    const arpOwner = owners[owners.length - 1];
    if (arpOwner) {
      const s = vmSender(arpOwner);
      probes.push({
        check: "extra address arp (owner)",
        from: arpOwner.name,
        to: `gw-${gw.network} as ${vip}`,
        expect: "delivered",
        sender: s,
        frames: [garp(s, vip)],
        look: { at: [gwAt], filter: arpSeen(s.mac, vip) },
        controls: [],
      });
    }
    for (const n of [dhcpVm, lone].filter((v): v is LabVm => v !== undefined && nonOwners.includes(v))) {
      const s = vmSender(n);
      const p = nextPort();
      probes.push({
        check: "extra address (not owner)",
        from: n.name,
        to: `gw-${gw.network} as ${vip}`,
        expect: "dropped",
        sender: s,
        frames: [udpTo(s, gwDst, p, { srcIp: vip })],
        look: { at: [gwAt], filter: udpSeen(vip, p) },
        controls: [{ what: `own address ${s.ip}`, frames: [udpTo(s, gwDst, p)], look: { at: [gwAt], filter: udpSeen(s.ip, p) } }],
      });
    }
    if (strangerA) {
      const s = vmSender(strangerA);
      probes.push({
        check: "extra address arp (not owner)",
        from: strangerA.name,
        to: `gw-${gw.network} as ${vip}`,
        expect: "dropped",
        sender: s,
        frames: [garp(s, vip)],
        look: { at: [gwAt], filter: arpSeen(s.mac, vip) },
        controls: [{ what: `own address ${s.ip}`, frames: [garp(s, s.ip)], look: { at: [gwAt], filter: arpSeen(s.mac, s.ip) } }],
        exclusive: true,
      });
    }
  }

  // --- RARP announcements (QEMU after a live migration): the VM's own MAC reaches the other hosts; a foreign MAC does not
  const rarpOwn = (vm: LabVm | undefined) => {
    if (!vm) return;
    const s = vmSender(vm);
    probes.push({
      check: `rarp announcement (own MAC${isolated(vm) ? ", isolated" : ""})`,
      from: vm.name,
      to: `gw-${gw.network}`,
      expect: "delivered",
      sender: s,
      frames: [{ kind: "rarp", src_mac: s.mac }],
      look: { at: [gwAt], filter: `rarp and ether src ${s.mac}` },
      controls: [],
    });
  };
  const rarpForeign = (vm: LabVm | undefined, mac: string) => {
    if (!vm) return;
    const s = vmSender(vm);
    probes.push({
      check: "rarp announcement (foreign MAC)",
      from: vm.name,
      to: `gw-${gw.network} as ${mac}`,
      expect: "dropped",
      sender: s,
      frames: [{ kind: "rarp", src_mac: mac }],
      look: { at: [gwAt], filter: `rarp and ether src ${mac}` },
      controls: [{ what: `own MAC ${s.mac}`, frames: [{ kind: "rarp", src_mac: s.mac }], look: { at: [gwAt], filter: `rarp and ether src ${s.mac}` } }],
    });
  };
  rarpOwn(staticA);
  rarpOwn(m1);
  rarpForeign(staticB, foreign(2));
  rarpForeign(strangerA, foreign(3));
  return probes;
}

// ---------------------------------------------------------------- running

/** A tcpdump writing inbound frames of one interface to a pcap file. */
interface Capture {
  point: CapturePoint;
  file: string;
  child: ChildProcess;
  stderr: string;
}

/** Bounded waits of the tier (ms). */
export const ATTACK_TIMING = { listen: 5000, settle: 400, stop: 3000 };

/**
 * Starts `tcpdump -i IF -n -U -w FILE -Q in` in the point's namespace and
 * waits (bounded) until it prints "listening on" (tcpdump(1)): frames sent
 * after this resolves are captured. Runs as root (`-Z root`), immediate mode.
 * @throws when tcpdump exits or stays silent for ATTACK_TIMING.listen ms (then it is stopped).
 */
export async function startCapture(point: CapturePoint, file: string, filter?: string, text = false): Promise<Capture> {
  const args = ["-i", point.iface, "-n", "-Q", "in", "--immediate-mode", "-Z", "root", ...(text ? ["-l", "-tt"] : ["-U", "-w", file]), ...(filter ? [filter] : [])];
  const argv = inNs(point.namespace, ["tcpdump", ...args]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", text ? "pipe" : "ignore", "pipe"] });
  const cap: Capture = { point, file, child, stderr: "" };
  child.stderr!.on("data", (d: Buffer) => {
    cap.stderr += d.toString();
  });
  const until = Date.now() + ATTACK_TIMING.listen;
  while (!cap.stderr.includes("listening on")) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > until) {
      await stopProcess(child);
      throw new Error(`tcpdump on ${point.name} (${point.namespace} ${point.iface}) did not start: ${cap.stderr.trim().slice(-300) || "no output"}`);
    }
    await sleep(20);
  }
  return cap;
}

/** Signals a child we started (by its pid) and waits for it to exit; SIGKILL after ATTACK_TIMING.stop ms. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGINT"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, signal);
    } catch {
      /* already gone */
    }
  }
  const t = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }, ATTACK_TIMING.stop);
  await exited;
  clearTimeout(t);
}

/** Frames in a pcap file matching `filter` (`tcpdump -r FILE -nn FILTER`, one line per frame). @throws on a bad filter or file. */
async function countIn(x: LabExec, file: string, filter: string): Promise<number> {
  const r = await x.probe(["tcpdump", "-r", file, "-nn", filter]);
  if (r.exitCode !== 0) throw new Error(`tcpdump -r ${file} '${filter}' exited ${r.exitCode}: ${r.stderr.trim().slice(-200)}`);
  return r.stdout.split("\n").filter((l) => l.trim()).length;
}

/**
 * One `attack.py --serve IFACE` per sender namespace, started on first use
 * and kept for the run (scapy is imported once per namespace, not once per
 * row); requests to one sender are answered in order. `close()` ends every
 * one of them (stdin closed, then SIGTERM by pid).
 */
export class SenderPool {
  private readonly servers = new Map<string, { child: ChildProcess; lines: string[]; waiters: ((line: string) => void)[]; chain: Promise<unknown>; out: string }>();

  private readonly timeoutMs: number;

  /** `timeoutMs`: how long one request (or the start, scapy's import) may take before it is an error. */
  constructor(timeoutMs = 60_000) {
    this.timeoutMs = timeoutMs;
  }

  private async server(s: Sender) {
    const key = `${s.namespace}/${s.iface}`;
    let srv = this.servers.get(key);
    if (srv) return srv;
    const argv = inNs(s.namespace, [PYTHON, ATTACK_PY, "--serve", s.iface]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    const created = { child, lines: [] as string[], waiters: [] as ((line: string) => void)[], chain: Promise.resolve() as Promise<unknown>, out: "" };
    srv = created;
    this.servers.set(key, created);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const w = created.waiters.shift();
        if (w) w(line);
        else created.lines.push(line);
      }
    });
    child.stderr!.on("data", (d: Buffer) => (created.out = (created.out + d.toString()).slice(-2000)));
    child.stdin!.on("error", () => undefined);
    const ready = await this.nextLine(created, s);
    if (ready !== "ready") throw new Error(`attack.py --serve in ${s.namespace} did not start: ${ready} ${created.out.trim().slice(-300)}`);
    return created;
  }

  private nextLine(srv: { child: ChildProcess; lines: string[]; waiters: ((line: string) => void)[]; out: string }, s: Sender): Promise<string> {
    const queued = srv.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`attack.py in ${s.namespace}: no answer within ${this.timeoutMs} ms ${srv.out.trim().slice(-300)}`)), this.timeoutMs);
      const onExit = () => reject(new Error(`attack.py in ${s.namespace} exited: ${srv.out.trim().slice(-300)}`));
      srv.child.once("exit", onExit);
      srv.waiters.push((line) => {
        clearTimeout(t);
        srv.child.off("exit", onExit);
        resolve(line);
      });
    });
  }

  /** Starts the sender's server (scapy imported) without sending anything. */
  async start(s: Sender): Promise<void> {
    await this.server(s);
  }

  /** Sends `frames` from `s`: `count` rounds, `intervalMs` apart. @throws when attack.py reports an error or does not answer. */
  async send(s: Sender, frames: Frame[], count = 2, intervalMs = 30): Promise<void> {
    if (frames.length === 0) return;
    const srv = await this.server(s);
    const job = srv.chain.then(async () => {
      srv.child.stdin!.write(JSON.stringify({ count, interval_ms: intervalMs, frames }) + "\n");
      const answer = await this.nextLine(srv, s);
      if (!/^sent \d+$/.test(answer)) throw new Error(`attack.py in ${s.namespace}: ${answer}`);
    });
    srv.chain = job.catch(() => undefined);
    await job;
  }

  /** Stops every server this pool started (end of stdin, then SIGTERM by pid). */
  async close(): Promise<void> {
    await Promise.all(
      [...this.servers.values()].map(async (srv) => {
        srv.child.stdin!.end();
        await Promise.race([new Promise((r) => srv.child.once("exit", r)), sleep(1000)]);
        await stopProcess(srv.child, "SIGTERM");
      }),
    );
    this.servers.clear();
  }
}

/** The MAC of `ip` in a namespace's neighbour table (`ip -json neigh show`), undefined when it has no entry. */
async function neighbourMac(x: LabExec, w: NeighbourWatch): Promise<string | undefined> {
  const r = await x.probe(["ip", "-n", w.namespace, "-json", "neigh", "show", "to", w.ip, "dev", w.dev]);
  if (r.exitCode !== 0) throw new Error(`ip -n ${w.namespace} neigh show: ${r.stderr.trim()}`);
  const rows = JSON.parse(r.stdout || "[]") as { dst: string; lladdr?: string; state?: string[] }[];
  return rows.find((n) => n.dst === w.ip && n.lladdr && !(n.state ?? []).includes("FAILED"))?.lladdr?.toLowerCase();
}

/**
 * Runs one row: captures at every point it looks at, the controls' frames
 * and commands and the attack frames (controls first, so a leaked attack
 * cannot spoil them), a settle wait, then counts and verdict.
 */
export async function runAttackProbe(p: AttackProbe, dir: string, pool: SenderPool, x = new LabExec(60_000)): Promise<AttackRow> {
  const base = { check: p.check, from: p.from, to: p.to, expect: p.expect };
  const points = new Map<string, CapturePoint>();
  for (const l of [p.look, ...p.controls.map((c) => c.look)]) for (const pt of l.at) points.set(`${pt.namespace}/${pt.iface}`, pt);
  const caps = new Map<string, Capture>();
  const safe = p.check.replace(/[^a-z0-9]+/gi, "-").slice(0, 40);
  const stamp = `${safe}-${p.from}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    let before: string | undefined;
    if (p.neighbour) {
      before = await neighbourMac(x, p.neighbour);
      if (before !== p.neighbour.mac) {
        return { ...base, got: "unproven", ok: false, detail: `before the attack ${p.neighbour.name} holds ${p.neighbour.ip} at ${before ?? "no entry"}, not ${p.neighbour.mac}: nothing to poison` };
      }
    }
    await Promise.all(
      [...points].map(async ([key, pt], i) => {
        caps.set(key, await startCapture(pt, join(dir, `${stamp}-${i}.pcap`)));
      }),
    );
    const own = p.controls.filter((c) => c.frames && !c.from).flatMap((c) => c.frames!);
    const jobs: Promise<unknown>[] = [pool.send(p.sender, [...own, ...p.frames])];
    for (const c of p.controls) {
      if (c.frames && c.from) jobs.push(pool.send(c.from, c.frames));
      if (c.run) jobs.push(x.probe(c.run));
    }
    const settled = await Promise.allSettled(jobs);
    await sleep(ATTACK_TIMING.settle);
    await Promise.all([...caps.values()].map((c) => stopProcess(c.child)));
    const failed = settled.find((s) => s.status === "rejected") as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
    const count = async (l: Look) => {
      let n = 0;
      const per: string[] = [];
      const counts = await Promise.all(l.at.map((pt) => countIn(x, caps.get(`${pt.namespace}/${pt.iface}`)!.file, l.filter)));
      l.at.forEach((pt, i) => {
        n += counts[i]!;
        per.push(`${counts[i]} at ${pt.name}`);
      });
      return { n, text: per.join(", ") };
    };
    const [attackCount, ...seen] = await Promise.all([p.look, ...p.controls.map((c) => c.look)].map(count));
    const attack = attackCount!;
    const controls = p.controls.map((c, i) => ({ c, seen: seen[i]! }));
    const missing = controls.filter((c) => c.seen.n === 0);
    let poisoned: string | undefined;
    if (p.neighbour) {
      const after = await neighbourMac(x, p.neighbour);
      if (after !== undefined && after !== p.neighbour.mac) poisoned = after;
    }
    const parts = [`attack: ${attack.text}`];
    if (p.neighbour) parts.push(`${p.neighbour.name} neighbour ${p.neighbour.ip}: ${poisoned ? `now ${poisoned} (poisoned)` : `kept ${p.neighbour.mac}`}`);
    for (const { c, seen } of controls) parts.push(`control ${c.what}: ${seen.text}`);
    const seenAttack = attack.n > 0 || poisoned !== undefined;
    let got: AttackRow["got"] = seenAttack ? "delivered" : "dropped";
    if (!seenAttack && p.expect === "dropped" && missing.length > 0) got = "unproven";
    const ok = got === p.expect && missing.length === 0;
    if (poisoned && p.neighbour) {
      await x.probe(["ip", "-n", p.neighbour.namespace, "neigh", "replace", p.neighbour.ip, "lladdr", p.neighbour.mac, "dev", p.neighbour.dev, "nud", "stale"]);
    }
    return { ...base, got, ok, detail: parts.join("; ") };
  } catch (err) {
    return { ...base, got: "error", ok: false, detail: (err as Error).message };
  } finally {
    await Promise.all([...caps.values()].map((c) => stopProcess(c.child)));
    for (const r of p.restore ?? []) await pool.send(r.from, r.frames, 1, 0).catch(() => undefined);
  }
}

/**
 * Before the rows: every VM taking part pings its gateway (bounded: three
 * tries of one echo each), so the neighbour entries the ARP rows watch exist
 * on both sides and a VM whose lease the hosts have not learned yet gets
 * the time to. Returns the VMs that never got an answer.
 */
export async function warmUp(probes: AttackProbe[], status: LabStatus, x = new LabExec(10_000)): Promise<string[]> {
  const names = new Set(probes.flatMap((p) => [p.sender.name, ...p.look.at.map((a) => a.name), ...p.controls.flatMap((c) => c.look.at.map((a) => a.name))]));
  const vms = status.vms.filter((v) => (v.kind === "namespace" || v.kind === "stranger") && v.ip && names.has(v.name));
  const gwOf = (v: LabVm) => status.gateways?.find((g) => g.network === v.network)?.ip;
  const failed: string[] = [];
  await Promise.all(
    vms.map(async (v) => {
      const gw = gwOf(v);
      if (!gw) return;
      for (let i = 0; i < 3; i++) {
        const r = await x.probe(inNs(v.namespace, ["ping", "-n", "-q", "-c", "1", "-W", "1", gw]));
        if (r.exitCode === 0) return;
      }
      failed.push(v.name);
    }),
  );
  // the kernel replaces a neighbour entry by a unicast ARP reply only after neigh locktime (1 s by default, ip-sysctl.rst)
  await sleep(1100);
  return failed.sort();
}

/**
 * What an exclusive row may disturb: its sender, every VM it looks at, the
 * neighbour entry it watches; a row that can teach switches a MAC it does
 * not own (it has a `restore`) disturbs everything.
 */
function stateKeys(p: AttackProbe): Set<string> {
  if (p.restore) return new Set(["*"]);
  const keys = new Set([p.sender.namespace, ...p.look.at.map((a) => a.namespace), ...p.controls.flatMap((c) => [...c.look.at.map((a) => a.namespace), ...(c.from ? [c.from.namespace] : [])])]);
  if (p.neighbour) keys.add(`neigh:${p.neighbour.namespace}/${p.neighbour.ip}`);
  return keys;
}

/** Exclusive rows in batches (in order, first fit) whose rows share nothing that one could disturb for another. */
export function exclusiveBatches(probes: AttackProbe[]): AttackProbe[][] {
  const batches: { rows: AttackProbe[]; keys: Set<string> }[] = [];
  for (const p of probes) {
    const keys = stateKeys(p);
    const fits = (b: { keys: Set<string> }) => !keys.has("*") && !b.keys.has("*") && ![...keys].some((k) => b.keys.has(k));
    const b = batches.find(fits);
    if (b) {
      b.rows.push(p);
      for (const k of keys) b.keys.add(k);
    } else batches.push({ rows: [p], keys });
  }
  return batches.map((b) => b.rows);
}

/**
 * Runs the attack rows: shared rows `concurrency` at a time (each with its
 * own ports, MACs and filters), then the exclusive ones in batches of rows
 * that touch disjoint namespaces and neighbour entries. pcap
 * files live in a temporary folder removed at the end.
 */
export async function runAttackProbes(probes: AttackProbe[], status: LabStatus, concurrency = 8): Promise<AttackRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "netfleet-attack-"));
  const pool = new SenderPool();
  try {
    // interpreters start (scapy imports) while the VMs warm up
    const senders = new Map(probes.flatMap((p) => [p.sender, ...p.controls.flatMap((c) => (c.from ? [c.from] : [])), ...(p.restore ?? []).map((r) => r.from)]).map((s) => [`${s.namespace}/${s.iface}`, s]));
    await Promise.all([warmUp(probes, status), ...[...senders.values()].map((s) => pool.start(s))]);
    const queue = new PQueue({ concurrency });
    const shared = await Promise.all(probes.filter((p) => !p.exclusive).map((p) => queue.add(() => runAttackProbe(p, dir, pool))));
    const exclusive: AttackRow[] = [];
    for (const batch of exclusiveBatches(probes.filter((q) => q.exclusive))) exclusive.push(...(await Promise.all(batch.map((p) => runAttackProbe(p, dir, pool)))));
    return [...(shared as AttackRow[]), ...exclusive];
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `netfleet lab attack`: the rows for this lab and their results. @throws when the lab is not up. */
export async function labAttack(inventory: Inventory, status: LabStatus): Promise<AttackRow[]> {
  if (!status.up) throw new Error(`the lab is not up: ${(status.problems ?? []).join("; ") || "run netfleet lab up"}`);
  return runAttackProbes(attackProbes(inventory, status), status);
}

// ---------------------------------------------------------------- windows

/** What a window measurement saw at the target. */
export interface WindowResult {
  /** Spoofed frames seen at the target during the whole window (goal: 0). */
  leaked: number;
  /** Legitimate frames seen before the event (the stream worked). */
  legitBefore: number;
  /** Legitimate frames seen in all. */
  legit: number;
  /** Longest gap between two legitimate frames after the event began (ms). */
  outageMs: number;
  /** From the event's trigger (e.g. the agent's start) to the legitimate frame that ended that gap (ms). */
  resumeMs: number | undefined;
  /** Spoofed and legitimate frames sent (attack.py's count; the two alternate). */
  sent: number;
}

/**
 * Measures a window: `sender` sends a spoofed and a legitimate datagram
 * every `intervalMs` (10-20 ms: ../shared/design/attack-tier.md) to `to`
 * while `event` disturbs the host; a text-mode tcpdump at `at` timestamps
 * every arrival. `event` resolves with the time (epoch ms) its trigger
 * happened (e.g. when the agent was started again). The stream runs until
 * legitimate frames have flowed again for 500 ms after the trigger, or
 * `resumeTimeoutMs` — every process started here is stopped by its pid.
 */
export async function measureWindow(opts: {
  sender: Sender;
  to: { mac: string; ip: string };
  spoofIp: string;
  at: CapturePoint;
  port: number;
  event: () => Promise<number>;
  intervalMs?: number;
  resumeTimeoutMs?: number;
}): Promise<WindowResult> {
  const interval = opts.intervalMs ?? 15;
  const legitFrame: Frame = { kind: "udp", src_mac: opts.sender.mac, dst_mac: opts.to.mac, src_ip: opts.sender.ip, dst_ip: opts.to.ip, dport: opts.port };
  const spoofFrame: Frame = { ...legitFrame, src_ip: opts.spoofIp };
  const cap = await startCapture(opts.at, "", `udp and dst port ${opts.port}`, true);
  const legit: number[] = [];
  let leaked = 0;
  let buf = "";
  cap.child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^(\d+\.\d+) IP (\d+\.\d+\.\d+\.\d+)\.\d+ >/.exec(line);
      if (!m) continue;
      if (m[2] === opts.sender.ip) legit.push(Math.round(Number(m[1]) * 1000));
      else if (m[2] === opts.spoofIp) leaked++;
    }
  });
  const maxRounds = Math.ceil(((opts.resumeTimeoutMs ?? 30_000) + 20_000) / interval);
  const argv = inNs(opts.sender.namespace, [PYTHON, ATTACK_PY, opts.sender.iface, String(Math.min(maxRounds, 10_000)), String(interval), JSON.stringify(legitFrame), JSON.stringify(spoofFrame)]);
  const stream = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  stream.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  stream.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  try {
    const until = Date.now() + 10_000;
    while (legit.length < 5) {
      if (Date.now() > until || stream.exitCode !== null) throw new Error(`the legitimate stream from ${opts.sender.name} never reached ${opts.at.name} (${out.trim().slice(-200)})`);
      await sleep(20);
    }
    const legitBefore = legit.length;
    const eventAt = Date.now();
    const trigger = await opts.event();
    const deadline = Date.now() + (opts.resumeTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      const last = legit[legit.length - 1] ?? 0;
      const firstAfter = legit.find((t) => t > trigger);
      if (firstAfter !== undefined && last - firstAfter >= 500) break;
      await sleep(50);
    }
    await stopProcess(stream, "SIGTERM");
    await sleep(300);
    await stopProcess(cap.child);
    let outageMs = 0;
    let resumeMs: number | undefined;
    const during = legit.filter((t) => t >= eventAt - 1000);
    for (let i = 1; i < during.length; i++) {
      const gap = during[i]! - during[i - 1]!;
      if (gap > outageMs) {
        outageMs = gap;
        resumeMs = during[i]! - trigger;
      }
    }
    if (!legit.some((t) => t > trigger)) resumeMs = undefined;
    const sent = Number(/sent (\d+)/.exec(out)?.[1] ?? 0);
    return { leaked, legitBefore, legit: legit.length, outageMs, resumeMs, sent };
  } finally {
    await stopProcess(stream, "SIGTERM");
    await stopProcess(cap.child);
  }
}
