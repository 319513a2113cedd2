/**
 * What an attack row is made of (frames for attack.py, senders, capture
 * points, controls, neighbour watches) and the row itself: a leaf module,
 * so the families (attack-spoofing/isolation/addresses.ts), the cast
 * (attack-scene.ts) and the runner (attack-run.ts) depend on it and not on
 * attack.ts, which lists the families.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
