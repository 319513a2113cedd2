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
 * What a row is made of lives in attack-types.ts; this file holds the list of families (attack-scene.ts
 * picks the cast, attack-spoofing/isolation/addresses.ts make the rows);
 * attack-run.ts sends, captures and judges them.
 */
import type { Inventory } from "@netfleet/shared";
import type { LabStatus } from "../types.ts";
import { extraAddresses, rarp } from "./attack-addresses.ts";
import { flooding, isolation } from "./attack-isolation.ts";
import { attackScene } from "./attack-scene.ts";
import { arpClaims, ipSpoofing, ipv6Guards, macSpoofing, rogueDhcp } from "./attack-spoofing.ts";
import type { AttackProbe } from "./attack-types.ts";

/** The families of attack rows, in the order they run. */
const FAMILIES = [ipSpoofing, arpClaims, macSpoofing, rogueDhcp, ipv6Guards, isolation, flooding, extraAddresses, rarp];

/**
 * The attack rows for a lab (see inventories/lab), from the cast
 * attackScene picks out of the inventory and `status`. Rows whose roles the
 * lab lacks are left out (the caller checks the count).
 */
export function attackProbes(inventory: Inventory, status: LabStatus): AttackProbe[] {
  const scene = attackScene(inventory, status);
  for (const family of FAMILIES) family(scene);
  return scene.probes;
}
