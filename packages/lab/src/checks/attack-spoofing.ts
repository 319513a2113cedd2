/** The attack rows of spoofing and server guards: IP, ARP and MAC spoofing, rogue DHCP offers, IPv6 router advertisements and DHCPv6. */
import type { LabVm } from "../types.ts";
import type { Frame, NeighbourWatch, Sender } from "./attack-types.ts";
import { BROADCAST, gwSender, inNs, vmPoint, vmSender, type Scene } from "./attack-scene.ts";

/** IP spoofing rows: a claimed source address (the gateway's, another VM's, an unleased one); control: the own address. */
export function ipSpoofing(scene: Scene): void {
  const { staticA, staticB, dhcpVm, strangerA, strangerB, lone, inRange, asGw, asVm, aim, nextPort, probes, udpTo, udpSeen } = scene;
  const spoof = (kind: string, from: LabVm | undefined, claimed: { name: string; ip: string } | undefined, target: LabVm | "gateway" | undefined) => {
    if (!from || !claimed || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    const { to, at } = aim(target);
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
  spoof("static VM", staticA, asGw, staticB);
  spoof("static VM", staticA, asVm(staticB), "gateway");
  spoof("DHCP VM", dhcpVm, asGw, staticA);
  spoof("DHCP VM", dhcpVm, asVm(staticA), "gateway");
  spoof("DHCP VM", dhcpVm, { name: `unleased ${inRange}`, ip: inRange }, "gateway");
  spoof("unknown MAC", strangerA, asGw, staticB);
  spoof("unknown MAC", strangerB, asVm(staticA), "gateway");
  spoof("unknown MAC", strangerA, asVm(dhcpVm), "gateway");
  spoof("isolated VM", lone, asVm(staticA), "gateway");
}

/** ARP claim rows: the attacker's MAC for someone else's address; the victim's neighbour entry must hold. */
export function arpClaims(scene: Scene): void {
  const { gw, staticA, staticB, dhcpVm, strangerA, strangerB, lone, asGw, asVm, aim, probes, garp, arpSeen } = scene;
  const neighOf = (vm: LabVm, ip: string, mac: string, name: string): NeighbourWatch => ({ name, namespace: vm.namespace, dev: vm.interface, ip, mac });
  const gwNeigh = (vm: LabVm): NeighbourWatch => ({ name: `gw-${gw.network}`, namespace: gw.namespace, dev: gw.interface, ip: vm.ip!, mac: vm.mac });
  const arpClaim = (kind: "gratuitous" | "unicast reply", from: LabVm | undefined, claimed: { name: string; ip: string } | undefined, target: LabVm | "gateway" | undefined, watch?: NeighbourWatch) => {
    if (!from || !claimed || !target) return;
    const s = vmSender(from);
    const { to, at } = aim(target);
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
}

/** MAC spoofing rows: a frame with a source MAC that is not the port's; control: the same frame with its own MAC. */
export function macSpoofing(scene: Scene): void {
  const { gw, staticA, dhcpVm, strangerA, foreign, aim, nextPort, probes, udpTo, garp } = scene;
  const macSpoof = (from: LabVm | undefined, claimed: { name: string; mac: string; ip?: string } | undefined, target: LabVm | "gateway" | undefined, restore?: { from: Sender; frames: Frame[] }) => {
    if (!from || !claimed || !target) return;
    const s = vmSender(from);
    const p = nextPort();
    const { to, at } = aim(target);
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
}

/** DHCP server guard rows: a rogue offer to a neighbour; control: that neighbour's fresh exchange with the real dnsmasq. */
export function rogueDhcp(scene: Scene): void {
  const { gw, staticA, staticB, dhcpVm, nowhere, probes } = scene;
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
}

/** IPv6 guard rows: router advertisements and DHCPv6 server messages; control: the sender's IPv4 datagram to the same neighbour. */
export function ipv6Guards(scene: Scene): void {
  const { staticA, staticB, dhcpVm, strangerB, nextPort, probes, udpTo, udpSeen, dst } = scene;
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
}
