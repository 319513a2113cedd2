/**
 * The attack tier of the lab (`netfleet-lab attack`): crafted frames sent
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
 * This file holds what the rows are; attack-run.ts sends, captures and judges them.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { cidrContains, intToIpv4, ipv4ToInt, parseIpv4Cidr, type Inventory, type Ipv4Cidr } from "@netfleet/shared";
import { netnsExec } from "../exec.ts";
import type { LabGateway, LabStatus, LabVm } from "../types.ts";

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
 * One row of `netfleet-lab attack`, shaped like a `lab check` row.
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
