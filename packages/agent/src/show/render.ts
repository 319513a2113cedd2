import { escapeText, type HostView, type LinkCounters, type ShowBridge, type ShowLink, type ShowNft, type ShowVmPort } from "@netfleet/shared";
import { human, table } from "./format.ts";
import { countersSummary, ovsBonds, ovsCounters } from "./render-counters.ts";

/**
 * A HostView as text an operator of OVS and libvirt reads at a glance:
 * the OVS part in `ovs-vsctl show`'s layout (Bridge / Port / Interface,
 * `tag:`, `trunks:`, `bond_mode:`, `fail_mode:`), libvirt networks as
 * `virsh net-list --all` columns, sets as `nft list set` prints elements,
 * leases as dnsmasq's lease file columns. Pure.
 */

/** Seconds as `1h2m`, `3m4s`, `5s` (nft's way of printing timeouts). */
export function duration(s: number): string {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${m}m` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

function linkState(l: ShowLink): string {
  return l.state && l.state !== "UNKNOWN" ? l.state : l.up ? "up" : "down";
}

function bondsAndVlans(view: HostView): string[] {
  const out: string[] = [];
  const bonds = view.links.filter((l) => l.bond);
  if (bonds.length > 0) {
    out.push("Bonds");
    for (const b of bonds) {
      const lacp = b.bond!.lacpActive === undefined ? "" : `, lacp_active ${b.bond!.lacpActive ? "on" : "off"}`;
      out.push(`  ${b.name}: ${b.bond!.mode}, miimon ${b.bond!.miimon}${lacp}, mtu ${b.mtu}, ${linkState(b)}${b.master ? `, master ${b.master}` : ""}`);
      for (const m of view.links.filter((l) => l.master === b.name)) {
        out.push(`    member ${m.name}: ${[m.member?.state, m.member?.mii ? `mii ${m.member.mii}` : undefined, linkState(m)].filter(Boolean).join(", ")}`);
      }
    }
  }
  const vlans = view.links.filter((l) => l.vlan);
  if (vlans.length > 0) {
    out.push("VLAN interfaces");
    out.push(
      ...table([
        ["NAME", "ID", "PARENT", "PROTO", "MTU", "STATE", "MASTER", "ADDRESSES"],
        ...vlans.map((v) => [v.name, String(v.vlan!.id), v.parent ?? "-", v.vlan!.protocol, String(v.mtu), linkState(v), v.master ?? "-", v.addresses.join(" ") || "-"]),
      ]),
    );
  }
  return out;
}

/** The OVS database as `ovs-vsctl show` lays it out, each bridge followed by a summary of its OpenFlow table. */
function ovs(bridges: ShowBridge[]): string[] {
  const out: string[] = ["Open vSwitch"];
  if (bridges.length === 0) out.push("    (no bridges)");
  for (const b of bridges) {
    out.push(`    Bridge ${b.name}${b.owner ? `  (netfleet ${b.owner})` : ""}`);
    if (b.failMode) out.push(`        fail_mode: ${b.failMode}`);
    if (b.datapath !== "system") out.push(`        datapath_type: ${b.datapath}`);
    for (const p of b.ports) {
      out.push(`        Port ${p.name}`);
      if (p.tag !== undefined) out.push(`            tag: ${p.tag}`);
      if (p.trunks.length > 0) out.push(`            trunks: [${p.trunks.join(", ")}]`);
      if (p.bondMode) out.push(`            bond_mode: ${p.bondMode}`);
      if (p.lacp) out.push(`            lacp: ${p.lacp}`);
      for (const i of p.interfaces) {
        out.push(`            Interface ${i.name}${i.ofport !== undefined && i.ofport > 0 ? `  (ofport ${i.ofport})` : ""}`);
        if (i.type !== "system") out.push(`                type: ${i.type}`);
        const opts = Object.entries(i.options);
        if (opts.length > 0) out.push(`                options: {${opts.map(([k, v]) => `${k}=${v}`).join(", ")}}`);
        if (i.attachedMac) out.push(`                attached-mac: ${i.attachedMac}${i.profile ? `, port-profile: ${i.profile}` : ""}`);
      }
    }
    if (b.flows) {
      const packets = b.flows.reduce((n, f) => n + f.packets, 0);
      const tables = [...new Set(b.flows.map((f) => f.table))].sort((x, y) => x - y);
      const perTable = tables.map((t) => `table ${t}: ${b.flows!.filter((f) => f.table === t).length}`).join(", ");
      out.push(`        OpenFlow: ${b.flows.length} rules${perTable ? ` (${perTable})` : ""}, ${human(packets)} packets matched`);
      for (const f of b.flows.filter((f) => f.match === "" && f.actions === "drop" && f.packets > 0)) {
        out.push(`            table ${f.table} floor drop: ${human(f.packets)} packets`);
      }
    }
  }
  return out;
}

function vmPorts(ports: ShowVmPort[]): string[] {
  if (ports.length === 0) return [];
  const rows = ports.map((p) => [
    p.port,
    p.bridge,
    String(p.ofport),
    p.mac,
    p.hasRules ? p.addresses.join(" ") || "(none: DHCP only)" : "(no rules yet)",
    p.isolated ? "yes" : "no",
    p.lease ? `${p.lease.ip}` : "-",
    human(p.allowedPackets),
    human(p.droppedPackets),
  ]);
  return ["VM ports (anti-spoofing policy in OpenFlow)", ...table([["PORT", "BRIDGE", "OFPORT", "MAC", "MAY SEND AS", "ISOLATED", "LEASE", "PASSED", "DROPPED"], ...rows])];
}

function networks(view: HostView): string[] {
  if (!view.networks) return [];
  if (view.networks.length === 0) return ["libvirt networks", "  (none)"];
  return [
    "libvirt networks",
    ...table([
      ["NAME", "STATE", "AUTOSTART", "PERSISTENT", "BRIDGE", "FORWARD", "PORTGROUPS", "OWNER"],
      ...view.networks.map((n) => [
        n.name,
        n.active ? "active" : "inactive",
        n.autostart ? "yes" : "no",
        n.persistent ? "yes" : "no",
        n.bridge ?? "-",
        [n.forwardMode, n.virtualport].filter(Boolean).join("/") || "-",
        n.portgroups.map((g) => `${g.name}${g.default ? "*" : ""}${g.vlan !== undefined ? `(vlan ${g.vlan})` : ""}`).join(",") || "-",
        n.owner ?? "-",
      ]),
    ]),
  ];
}

function leases(view: HostView): string[] {
  if (view.leases.length === 0) return [];
  const now = Date.parse(view.at) / 1000;
  return [
    "DHCP leases",
    ...table([
      ["NETWORK", "IP", "MAC", "HOSTNAME", "EXPIRES IN", "SOURCE"],
      ...view.leases.map((l) => [l.network, l.ip, l.mac, l.hostname ?? "-", l.expires === 0 ? "never" : duration(Math.max(0, Math.round(l.expires - now))), l.source]),
    ]),
  ];
}

function nft(t: ShowNft | undefined): string[] {
  if (!t) return [];
  if (!t.exists) return ["nftables: no table inet netfleet"];
  const out = [`nftables table inet netfleet${t.structure ? ` (netfleet structure ${t.structure})` : " (no netfleet mark)"}`];
  for (const s of t.sets) {
    const els = s.elements.map((e) => (e.expiresS !== undefined && e.expiresS > 0 ? `${e.value} expires ${duration(e.expiresS)}` : e.value));
    out.push(`  set ${s.name}: ${els.length === 0 ? "(empty)" : `${els.length} element${els.length === 1 ? "" : "s"}`}`);
    for (const e of els) out.push(`    ${e}`);
  }
  if (t.counters.length > 0) {
    out.push("  counters");
    out.push(...table([["CHAIN", "PACKETS", "BYTES", "RULE"], ...t.counters.map((c) => [c.chain, human(c.packets), human(c.bytes), c.rule])], "    "));
  }
  return out;
}

function counters(links: ShowLink[]): string[] {
  const rows = links.filter((l): l is ShowLink & { counters: LinkCounters } => l.counters !== undefined && l.name !== "lo");
  if (rows.length === 0) return [];
  return [
    "Interface counters",
    ...table([
      ["NAME", "KIND", "STATE", "RX PKTS", "RX BYTES", "RX DROP", "RX ERR", "TX PKTS", "TX BYTES", "TX DROP", "TX ERR"],
      ...rows.map((l) => {
        const c = l.counters;
        return [l.name, l.kind ?? "-", linkState(l), human(c.rxPackets), human(c.rxBytes), human(c.rxDropped), human(c.rxErrors), human(c.txPackets), human(c.txBytes), human(c.txDropped), human(c.txErrors)];
      }),
    ]),
  ];
}

function addresses(links: ShowLink[]): string[] {
  const withAddr = links.filter((l) => l.addresses.length > 0 && l.name !== "lo");
  if (withAddr.length === 0) return [];
  return ["Addresses", ...table(withAddr.map((l) => [l.name, l.addresses.join(" ")]))];
}

/** The view with every string escaped (shared escapeText: control characters, escape sequences, bidi controls). */
function escapedView(view: HostView): HostView {
  return JSON.parse(JSON.stringify(view), (_key, value: unknown) => (typeof value === "string" ? escapeText(value) : value)) as HostView;
}

/**
 * The whole view, sections in the order an operator walks a host: header
 * (host, revision and assignment when known, when read), bonds and VLANs,
 * addresses, OVS, OVS bonds, VM ports, libvirt networks, leases, nftables,
 * kernel and OVS counters and their summary, then what could not be read. Ends with a newline. Every string of the
 * view (the agent's, and through it the host's: names, aliases, options,
 * errors) is printed through escapeText, so a control character, an escape
 * sequence or a line break in it shows as a visible escape and cannot
 * repaint the operator's terminal.
 */
export function renderHostView(given: HostView, running?: { revision: number; hash: string | null }): string {
  const view = escapedView(given);
  const head = `${view.host}: ${running ? (running.hash ? `revision ${running.revision}, assignment ${running.hash.slice(0, 12)}` : "no assignment applied") + ", " : ""}read ${view.at}`;
  const sections = [
    bondsAndVlans(view),
    addresses(view.links),
    view.bridges ? ovs(view.bridges) : [],
    ovsBonds(view),
    vmPorts(view.vmPorts),
    networks(view),
    leases(view),
    nft(view.nft),
    counters(view.links),
    ovsCounters(view),
    countersSummary(view.counters),
    view.problems.length > 0 ? ["Not read", ...view.problems.map((p) => `  ${p.source}: ${p.error}`)] : [],
  ].filter((s) => s.length > 0);
  return [head, ...sections.map((s) => ["", ...s].join("\n"))].join("\n") + "\n";
}
