/** The attack rows of addresses a VM may announce: extra (virtual) addresses and RARP after a live migration. */
import type { LabVm } from "../types.ts";
import type { Control, Frame } from "./attack-types.ts";
import { vmSender, type Scene } from "./attack-scene.ts";

/**
 * Extra (virtual) address rows: the owners may use it, with their ARP; no
 * other VM may (control: the same frame from the sender's own address).
 */
export function extraAddresses(scene: Scene): void {
  const { gw, strangerA, dhcpVm, lone, vip, owners, nonOwners, nextPort, probes, gwAt, udpTo, udpSeen, garp, arpSeen, gwDst } = scene;
  if (!vip) return;
  const to = `gw-${gw.network} as ${vip}`;
  const who = (owner: boolean) => (owner ? "owner" : "not owner");
  const datagram = (vm: LabVm, owner: boolean) => {
    const s = vmSender(vm);
    const p = nextPort();
    const own: Control = { what: `own address ${s.ip}`, frames: [udpTo(s, gwDst, p)], look: { at: [gwAt], filter: udpSeen(s.ip, p) } };
    probes.push({
      check: `extra address (${who(owner)})`,
      from: vm.name,
      to,
      expect: owner ? "delivered" : "dropped",
      sender: s,
      frames: [udpTo(s, gwDst, p, { srcIp: vip })],
      look: { at: [gwAt], filter: udpSeen(vip, p) },
      controls: owner ? [] : [own],
    });
  };
  const arp = (vm: LabVm, owner: boolean) => {
    const s = vmSender(vm);
    const own: Control = { what: `own address ${s.ip}`, frames: [garp(s, s.ip)], look: { at: [gwAt], filter: arpSeen(s.mac, s.ip) } };
    probes.push({
      check: `extra address arp (${who(owner)})`,
      from: vm.name,
      to,
      expect: owner ? "delivered" : "dropped",
      sender: s,
      frames: [garp(s, vip)],
      look: { at: [gwAt], filter: arpSeen(s.mac, vip) },
      controls: owner ? [] : [own],
      ...(owner ? {} : { exclusive: true }),
    });
  };
  for (const o of owners) datagram(o, true);
  const arpOwner = owners[owners.length - 1];
  if (arpOwner) arp(arpOwner, true);
  for (const n of [dhcpVm, lone].filter((v): v is LabVm => v !== undefined && nonOwners.includes(v))) datagram(n, false);
  if (strangerA) arp(strangerA, false);
}

/**
 * RARP announcement rows (QEMU's after a live migration): the VM's own MAC
 * reaches the other hosts; a foreign MAC does not (control: its own MAC).
 */
export function rarp(scene: Scene): void {
  const { gw, isolated, staticA, staticB, strangerA, m1, foreign, probes, gwAt } = scene;
  const announce = (mac: string): Frame => ({ kind: "rarp", src_mac: mac });
  const seen = (mac: string) => ({ at: [gwAt], filter: `rarp and ether src ${mac}` });
  const own = (vm: LabVm | undefined) => {
    if (!vm) return;
    const s = vmSender(vm);
    probes.push({ check: `rarp announcement (own MAC${isolated(vm) ? ", isolated" : ""})`, from: vm.name, to: `gw-${gw.network}`, expect: "delivered", sender: s, frames: [announce(s.mac)], look: seen(s.mac), controls: [] });
  };
  const foreignMac = (vm: LabVm | undefined, mac: string) => {
    if (!vm) return;
    const s = vmSender(vm);
    probes.push({
      check: "rarp announcement (foreign MAC)",
      from: vm.name,
      to: `gw-${gw.network} as ${mac}`,
      expect: "dropped",
      sender: s,
      frames: [announce(mac)],
      look: seen(mac),
      controls: [{ what: `own MAC ${s.mac}`, frames: [announce(s.mac)], look: seen(s.mac) }],
    });
  };
  own(staticA);
  own(m1);
  foreignMac(staticB, foreign(2));
  foreignMac(strangerA, foreign(3));
}
