import { basename } from "node:path";
import {
  SHOW_LIMITS,
  summariseCounters,
  decodeNetworkLeases,
  liveLeases,
  parseDnsmasqLeases,
  type HostView,
  type ShowBridge,
  type ShowFlow,
  type ShowLease,
  type ShowLink,
  type ShowNetwork,
  type ShowNft,
  type ShowOvsBond,
  type ShowVmPort,
} from "@netfleet/shared";
import { parseAddresses, parseLinks } from "../resources/ip-json.ts";
import { parseNetList, parseNetworkXml } from "../resources/libvirt.ts";
import { parseNftJson } from "../resources/nft-live.ts";
import { parseOvsState, type OvsState } from "../resources/ovsdb.ts";
import { ISOLATED_PROFILE, PRIORITY, vmPortsOf } from "../resources/vm-port-policy.ts";
import { dnsmasqHostnames, parseFlowsWithStats, parseLinkExtras, parseNftCounters } from "./parse.ts";
import type { InterfaceStats } from "./parse-counters.ts";
import type { RawObservation, RawRead } from "./read.ts";
import { countersOf } from "./view-counters.ts";

/** The owner mark on OVS rows (resources/ovs.ts). */
const OWNER_ID = "netfleet-owner";

type Problems = HostView["problems"];

/** The first lines of a failed read's stderr, for `problems`. */
function failure(read: RawRead): string {
  return (read.stderr.trim() || `exit ${read.exitCode}`).split("\n").slice(0, 2).join(" / ").slice(0, 1000);
}

/** A read's argv as `problems` names it: without ovs-vsctl's column lists and `--` separators (the rest says which read it was). */
function sourceOf(read: RawRead): string {
  return read.argv.filter((a) => a !== "--" && !a.startsWith("--columns=")).join(" ");
}

/** The parse of a read that succeeded; undefined (and a problem) when it failed or did not parse. */
function parsed<T>(read: RawRead, problems: Problems, parse: (stdout: string) => T): T | undefined {
  if (read.exitCode !== 0) {
    problems.push({ source: sourceOf(read), error: failure(read) });
    return undefined;
  }
  try {
    return parse(read.stdout);
  } catch (err) {
    problems.push({ source: sourceOf(read), error: (err as Error).message.slice(0, 1000) });
    return undefined;
  }
}

/** At most `max` items; a problem names what was cut. */
function bounded<T>(items: T[], max: number, what: string, problems: Problems): T[] {
  if (items.length <= max) return items;
  problems.push({ source: what, error: `${items.length} found, the first ${max} shown` });
  return items.slice(0, max);
}

function linksOf(raw: RawObservation, problems: Problems): ShowLink[] {
  const links = parsed(raw.links, problems, parseLinks);
  if (!links) return [];
  const extras = parseLinkExtras(raw.links.stdout);
  const addrs = parsed(raw.addrs, problems, parseAddresses) ?? new Map<string, string[]>();
  return [...links.values()].map((l) => {
    const x = extras.get(l.name) ?? {};
    const out: ShowLink = { name: l.name, kind: l.kind ?? null, mtu: l.mtu, up: l.up, addresses: addrs.get(l.name) ?? [] };
    if (x.state !== undefined) out.state = x.state;
    if (l.address !== undefined) out.mac = l.address;
    if (l.alias !== undefined) out.alias = l.alias;
    if (l.master !== undefined) out.master = l.master;
    if (l.parent !== undefined) out.parent = l.parent;
    if (l.bond) out.bond = { ...l.bond };
    if (l.vlan) out.vlan = { ...l.vlan };
    if (x.member) out.member = x.member;
    if (x.counters) out.counters = x.counters;
    return out;
  });
}

function bridgesOf(state: OvsState, flows: Record<string, ShowFlow[] | undefined>, stats: Map<string, InterfaceStats>, bonds: Map<string, ShowOvsBond>): ShowBridge[] {
  const portsByUuid = new Map([...state.ports.values()].map((p) => [p.uuid, p]));
  const ifacesByUuid = new Map([...state.interfaces.values()].map((i) => [i.uuid, i]));
  return [...state.bridges.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((b) => {
      const ports = b.portUuids
        .map((u) => portsByUuid.get(u))
        .filter((p) => p !== undefined)
        .sort((x, y) => x.name.localeCompare(y.name))
        .map((p) => {
          const port: ShowBridge["ports"][number] = { name: p.name, trunks: p.trunks, interfaces: [] };
          if (p.tag !== undefined) port.tag = p.tag;
          if (p.bondMode !== undefined) port.bondMode = p.bondMode;
          if (p.lacp !== undefined && p.interfaceUuids.length > 1) port.lacp = p.lacp;
          if (p.externalIds[OWNER_ID]) port.owner = p.externalIds[OWNER_ID];
          const bond = p.interfaceUuids.length > 1 ? bonds.get(p.name) : undefined;
          if (bond) port.bond = bond;
          for (const i of p.interfaceUuids.map((u) => ifacesByUuid.get(u)).filter((i) => i !== undefined).sort((x, y) => x.name.localeCompare(y.name))) {
            const iface: ShowBridge["ports"][number]["interfaces"][number] = { name: i.name, type: i.type, options: i.options };
            if (i.ofport !== undefined) iface.ofport = i.ofport;
            if (i.mac !== undefined) iface.mac = i.mac;
            if (i.externalIds["attached-mac"]) iface.attachedMac = i.externalIds["attached-mac"].toLowerCase();
            if (i.externalIds["port-profile"]) iface.profile = i.externalIds["port-profile"];
            Object.assign(iface, stats.get(i.name));
            port.interfaces.push(iface);
          }
          return port;
        });
      const out: ShowBridge = { name: b.name, datapath: b.datapath, ports };
      if (b.failMode !== undefined) out.failMode = b.failMode;
      if (b.externalIds[OWNER_ID]) out.owner = b.externalIds[OWNER_ID];
      const f = flows[b.name];
      if (f) out.flows = f;
      return out;
    });
}

/** A rule's match field value (`nw_src=10.0.0.5` → `10.0.0.5`). */
function field(f: ShowFlow, name: string): string | undefined {
  return f.match.split(",").find((m) => m.startsWith(`${name}=`))?.slice(name.length + 1);
}

/**
 * Each VM port's policy as its bridge's rules hold it (vm-port-policy.ts
 * PRIORITY): sources allowed by the 210 rules of its in_port, isolated by
 * its profile or by 220 rules, packets its rules passed and dropped.
 */
function vmPortsOfBridge(state: OvsState, bridge: ShowBridge, links: Map<string, ShowLink>, leases: ShowLease[]): ShowVmPort[] {
  const flows = bridge.flows ?? [];
  return vmPortsOf(state, bridge.name).map((p) => {
    const own = flows.filter((f) => f.table === 0 && field(f, "in_port") === String(p.ofport));
    // A non-isolated port's sources are in its 210 rules, an isolated one's in its 220 rules (to the gateway and its group).
    const sourceRules = own.filter((f) => (f.priority === PRIORITY.own || f.priority === PRIORITY.isolated) && f.actions !== "drop");
    const addresses = [...new Set(sourceRules.flatMap((f) => [field(f, "nw_src"), field(f, "arp_spa")].filter((a) => a !== undefined)))].sort();
    const dropped = own.filter((f) => f.actions === "drop");
    const port: ShowVmPort = {
      bridge: bridge.name,
      port: p.port,
      ofport: p.ofport,
      mac: p.mac,
      isolated: p.profile === ISOLATED_PROFILE || own.some((f) => f.priority === PRIORITY.isolated),
      addresses,
      hasRules: own.length > 0,
      allowedPackets: own.filter((f) => f.actions !== "drop").reduce((n, f) => n + f.packets, 0),
      droppedPackets: dropped.reduce((n, f) => n + f.packets, 0),
    };
    if (p.profile !== undefined) port.profile = p.profile;
    const lease = leases.find((l) => l.mac === p.mac);
    if (lease) port.lease = { network: lease.network, ip: lease.ip, expires: lease.expires };
    // The tap's kernel counters, else OVS's (a port whose device is not in this namespace).
    const counters = links.get(p.port)?.counters ?? bridge.ports.find((x) => x.name === p.port)?.interfaces.find((i) => i.name === p.port)?.counters;
    if (counters) port.counters = counters;
    return port;
  });
}

function networksOf(raw: RawObservation, problems: Problems): ShowNetwork[] | undefined {
  const list = parsed(raw.netList, problems, parseNetList);
  if (!list) return undefined;
  const out: ShowNetwork[] = [];
  for (const [name, st] of [...list].sort(([a], [b]) => a.localeCompare(b))) {
    const read = raw.netXml[name];
    const xml = read ? parsed(read, problems, parseNetworkXml) : undefined;
    const n: ShowNetwork = { name, ...st, portgroups: xml?.portgroups ?? [] };
    if (xml?.bridge !== undefined) n.bridge = xml.bridge;
    if (xml?.forwardMode !== undefined) n.forwardMode = xml.forwardMode;
    if (xml?.virtualport !== undefined) n.virtualport = xml.virtualport;
    if (xml?.owner !== undefined) n.owner = xml.owner;
    out.push(n);
  }
  return out;
}

/** Live leases from the lease files (dnsmasq's own, or a VM host's copies), by network then address. */
function leasesOf(raw: RawObservation, problems: Problems): ShowLease[] {
  const now = Math.floor(raw.at / 1000);
  const out: ShowLease[] = [];
  for (const [path, why] of Object.entries(raw.unreadFiles ?? {})) problems.push({ source: path, error: why });
  for (const [path, text] of Object.entries(raw.files)) {
    try {
      if (path.endsWith(".leases")) {
        const network = basename(path, ".leases");
        const names = dnsmasqHostnames(text);
        for (const l of liveLeases(parseDnsmasqLeases(text, path), now)) {
          const name = names.get(l.mac);
          out.push({ network, ...l, ...(name ? { hostname: name } : {}), source: "dnsmasq" });
        }
      } else {
        const table = decodeNetworkLeases(path, text);
        for (const l of liveLeases(table.leases, now)) out.push({ network: table.network, ...l, source: `from ${table.host}` });
      }
    } catch (err) {
      problems.push({ source: path, error: (err as Error).message.slice(0, 1000) });
    }
  }
  const ipKey = (ip: string) => ip.split(".").map((o) => o.padStart(3, "0")).join(".");
  return out.sort((a, b) => a.network.localeCompare(b.network) || ipKey(a.ip).localeCompare(ipKey(b.ip)));
}

/** The table `inet netfleet`: absent when nft could not be read at all; `exists: false` when there is no such table. */
function nftOf(raw: RawObservation, problems: Problems): ShowNft | undefined {
  if (raw.nftJson.exitCode !== 0 && /No such file or directory/.test(raw.nftJson.stderr)) return { exists: false, sets: [], counters: [] };
  const view = parsed(raw.nftJson, problems, parseNftJson);
  if (!view) return undefined;
  const sets: ShowNft["sets"] = [
    ...Object.entries(view.elements).map(([name, elements]) => ({ name, elements: bounded(elements, SHOW_LIMITS.setElements, `set ${name}`, problems).map((value) => ({ value })) })),
    ...Object.entries(view.dynamic).map(([name, elements]) => ({
      name,
      elements: bounded(elements, SHOW_LIMITS.setElements, `set ${name}`, problems).map((e) => ({ value: e.val, expiresS: Math.max(0, Math.round(e.expires)) })),
    })),
  ];
  const counters = raw.nftText.exitCode === 0 ? parseNftCounters(raw.nftText.stdout) : [];
  const nft: ShowNft = { exists: true, sets, counters: bounded(counters, SHOW_LIMITS.counters, "nft counters", problems) };
  if (view.structure !== undefined) nft.structure = view.structure;
  return nft;
}

/**
 * A HostView from what readHost read (pure: the unit tests' target). A
 * section whose tool failed is left out (bridges, networks, nft) or empty
 * (links), and `problems` names the command and its error; lists longer
 * than SHOW_LIMITS are cut, and `problems` says so.
 */
export function buildHostView(raw: RawObservation): HostView {
  const problems: Problems = [];
  const links = linksOf(raw, problems);
  const byName = new Map(links.map((l) => [l.name, l]));
  const leases = leasesOf(raw, problems);
  const state = parsed(raw.ovs, problems, parseOvsState);
  const flows = Object.fromEntries(Object.entries(raw.flows).map(([b, read]) => [b, parsed(read, problems, parseFlowsWithStats)]));
  const { stats, bonds } = countersOf(raw, (read, parse) => parsed(read, problems, parse));
  const bridges = state ? bridgesOf(state, flows, stats, bonds) : undefined;
  const vmPorts = state && bridges ? bridges.flatMap((b) => vmPortsOfBridge(state, b, byName, leases)) : [];
  for (const b of bridges ?? []) {
    b.ports = bounded(b.ports, SHOW_LIMITS.ports, `bridge ${b.name} ports`, problems);
    if (b.flows) b.flows = bounded(b.flows, SHOW_LIMITS.flows, `bridge ${b.name} flows`, problems);
  }
  const networks = networksOf(raw, problems);
  const nft = nftOf(raw, problems);
  const view: HostView = {
    host: raw.host,
    links: bounded(links, SHOW_LIMITS.links, "links", problems),
    vmPorts: bounded(vmPorts, SHOW_LIMITS.ports, "VM ports", problems),
    leases: bounded(leases, SHOW_LIMITS.leases, "leases", problems),
    problems: [],
    at: new Date(raw.at).toISOString(),
  };
  if (bridges) view.bridges = bounded(bridges, SHOW_LIMITS.bridges, "bridges", problems);
  if (networks) view.networks = bounded(networks, SHOW_LIMITS.networks, "libvirt networks", problems);
  if (nft) view.nft = nft;
  view.counters = summariseCounters(view).summary;
  view.problems = problems.slice(0, SHOW_LIMITS.problems);
  return view;
}
