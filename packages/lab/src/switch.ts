import type { LabExec } from "./exec.ts";
import type { Topology, TopoHost } from "./topology.ts";
import type { LabLag } from "./types.ts";

/**
 * ovs-vsctl arguments (one transaction, every step `--may-exist`, so a
 * second run changes nothing) that build the lab switch: bridge
 * `t.switchBridge` on the userspace datapath and, per host, its trunk links
 * carrying every VLAN of the site. A host whose uplink runs LACP
 * (`h.switchLag`) gets one bond of its switch ends with LACP active, bond
 * mode balance-tcp and lacp-time fast, the way a switch's LAG (port-channel)
 * faces a bonded server; a single-link LAG is a plain port with LACP on it
 * (OVS runs LACP on a one-interface port too). Every other host's links are
 * plain trunk ports, as before LAGs existed. Port columns:
 * ovs-vswitchd.conf.db(5) `Port` (trunks, bond_mode, lacp,
 * other_config:lacp-time).
 */
export function switchArgs(t: Topology): string[] {
  const trunks = `trunks=${t.trunks.join(",")}`;
  const args = ["--may-exist", "add-br", t.switchBridge, "--", "set", "Bridge", t.switchBridge, "datapath_type=netdev"];
  for (const h of t.hosts) {
    const lag = h.switchLag;
    if (!lag) {
      for (const l of h.trunkLinks) args.push("--", "--may-exist", "add-port", t.switchBridge, l.switchIf, "--", "set", "Port", l.switchIf, trunks);
      continue;
    }
    const lacp = [`lacp=${lag.lacp}`, `other_config:lacp-time=${lag.lacpTime}`];
    if (h.trunkLinks.length >= 2) {
      args.push("--", "--may-exist", "add-bond", t.switchBridge, lag.port, ...h.trunkLinks.map((l) => l.switchIf));
      args.push("--", "set", "Port", lag.port, trunks, `bond_mode=${lag.bondMode}`, ...lacp);
    } else {
      const only = h.trunkLinks[0]!.switchIf;
      args.push("--", "--may-exist", "add-port", t.switchBridge, only, "--", "set", "Port", only, trunks, ...lacp);
    }
  }
  return args;
}

/** The switch port that faces host `h`'s uplink as one LAG: the bond, the single port, or undefined without LACP. */
export function switchLagPort(h: TopoHost): string | undefined {
  if (!h.switchLag) return undefined;
  return h.trunkLinks.length >= 2 ? h.switchLag.port : h.trunkLinks[0]!.switchIf;
}

/** One member of an OVS bond as `ovs-appctl bond/show` prints it. */
export interface BondMember {
  name: string;
  /** `member X: enabled` (it carries traffic) or `disabled`. */
  enabled: boolean;
  /** `may_enable: true|false`: whether OVS would enable it (carrier, LACP). */
  mayEnable: boolean;
}

/** What `ovs-appctl bond/show BOND` says of one bond (OVS 3.1 text). */
export interface BondShow {
  bond: string;
  mode: string;
  /** `off` (no LACP on the port), `configured` (LACP runs, nothing negotiated) or `negotiated`. */
  lacpStatus: string;
  members: BondMember[];
}

/**
 * Parses `ovs-appctl bond/show BOND` (OVS 3.1: a `---- NAME ----` header,
 * `key: value` lines, then `member NAME: enabled|disabled` blocks with
 * `may_enable:`; older OVS said `slave`, read the same).
 * @throws Error when the text has no bond header, mode or lacp_status.
 */
export function parseBondShow(text: string): BondShow {
  const bond = /^---- (\S+) ----$/m.exec(text)?.[1];
  const mode = /^bond_mode: (\S+)$/m.exec(text)?.[1];
  const lacpStatus = /^lacp_status: (\S+)$/m.exec(text)?.[1];
  if (!bond || !mode || !lacpStatus) throw new Error(`not ovs-appctl bond/show output: ${JSON.stringify(text.slice(0, 120))}`);
  const members: BondMember[] = [];
  for (const m of text.matchAll(/^(?:member|slave) (\S+): (enabled|disabled)\n((?:[ \t]+.*\n?)*)/gm)) {
    members.push({ name: m[1]!, enabled: m[2] === "enabled", mayEnable: /may_enable: true/.test(m[3] ?? "") });
  }
  return { bond, mode, lacpStatus, members };
}

/** One member of an LACP port as `ovs-appctl lacp/show` prints it. */
export interface LacpMember {
  name: string;
  /** Words after the name: `current attached`, `defaulted detached`, `expired`... */
  status: string[];
  actorState: string[];
  partnerState: string[];
  /** Partner system id; `00:00:00:00:00:00` when no partner was heard. */
  partnerSysId: string;
}

/**
 * Parses `ovs-appctl lacp/show PORT` (OVS 3.1): `status: active negotiated`
 * and per member `member: NAME: current attached` with `actor state:` and
 * `partner state:` flag words (IEEE 802.1AX actor/partner state bits).
 * @throws Error when the text has no `status:` line.
 */
export function parseLacpShow(text: string): { status: string[]; members: LacpMember[] } {
  const status = /^\s*status: (.*)$/m.exec(text)?.[1];
  if (status === undefined) throw new Error(`not ovs-appctl lacp/show output: ${JSON.stringify(text.slice(0, 120))}`);
  const members: LacpMember[] = [];
  const blocks = text.split(/^(?=(?:member|slave): )/m).slice(1);
  for (const b of blocks) {
    const head = /^(?:member|slave): (\S+): ?(.*)$/m.exec(b);
    if (!head) continue;
    const words = (key: string) => (new RegExp(`^\\s*${key}: ?(.*)$`, "m").exec(b)?.[1] ?? "").split(/\s+/).filter(Boolean);
    members.push({ name: head[1]!, status: head[2]!.split(/\s+/).filter(Boolean), actorState: words("actor state"), partnerState: words("partner state"), partnerSysId: words("partner sys_id")[0] ?? "" });
  }
  return { status: status.split(/\s+/).filter(Boolean), members };
}

/** argv of `ovs-appctl` against the ovs-vswitchd whose unixctl socket is `ctl` (no namespace needed: it is a file). */
export function appctl(ctl: string, ...args: string[]): string[] {
  return ["ovs-appctl", "--timeout=10", "-t", ctl, ...args];
}

/**
 * The switch side of every LAG in the lab, read live (`ovs-appctl bond/show`,
 * or `lacp/show` for a one-link LAG) from the switch's ovs-vswitchd. A LAG
 * that is not negotiated, or has a member disabled, adds a line to
 * `problems`. Hosts without a LAG are not looked at (no command at all when
 * the lab has none).
 */
export async function lagsOf(x: LabExec, t: Topology, problems: string[]): Promise<LabLag[]> {
  const out: LabLag[] = [];
  for (const h of t.hosts) {
    const port = switchLagPort(h);
    if (!port) continue;
    const bonded = h.trunkLinks.length >= 2;
    const r = await x.probe(appctl(t.switchOvs.vsCtl, bonded ? "bond/show" : "lacp/show", port));
    if (r.exitCode !== 0) {
      problems.push(`LAG ${port} towards ${h.name}: ${r.stderr.trim() || r.stdout.trim() || `ovs-appctl exited ${r.exitCode}`}`);
      continue;
    }
    let lag: LabLag;
    if (bonded) {
      const b = parseBondShow(r.stdout);
      lag = { host: h.name, port, lacpStatus: b.lacpStatus, members: b.members.map((m) => ({ name: m.name, enabled: m.enabled })) };
    } else {
      const l = parseLacpShow(r.stdout);
      lag = { host: h.name, port, lacpStatus: l.status.includes("negotiated") ? "negotiated" : "configured", members: l.members.map((m) => ({ name: m.name, enabled: m.status.includes("current") })) };
    }
    out.push(lag);
    const enabled = lag.members.filter((m) => m.enabled).length;
    if (lag.lacpStatus !== "negotiated" || enabled < lag.members.length) {
      problems.push(`LAG ${port} towards ${h.name}: lacp_status ${lag.lacpStatus}, ${enabled} of ${lag.members.length} members enabled`);
    }
  }
  return out;
}
