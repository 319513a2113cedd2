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
 * This file holds what a row is and the list of families (attack-scene.ts
 * picks the cast, attack-spoofing/isolation/addresses.ts make the rows);
 * attack-run.ts sends, captures and judges them.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Inventory } from "@netfleet/shared";
import type { LabStatus } from "../types.ts";
import { extraAddresses, rarp } from "./attack-addresses.ts";
import { flooding, isolation } from "./attack-isolation.ts";
import { attackScene } from "./attack-scene.ts";
import { arpClaims, ipSpoofing, ipv6Guards, macSpoofing, rogueDhcp } from "./attack-spoofing.ts";

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
