import { z } from "zod";
import { parseJson } from "./tool-json.ts";

/**
 * What `ip -json` prints (iproute2 6.1 field names), reduced to what the
 * resources and the management guard look at: links, global IPv4
 * addresses, routes. Pure parsers; each throws ParseError naming the tool.
 */

/** One row of `ip -details -json link show`, reduced to what we manage. */
export interface Link {
  name: string;
  mtu: number;
  up: boolean;
  address?: string;
  alias?: string;
  master?: string;
  /** Parent device, for VLANs (veths also carry `link`: their peer). */
  parent?: string;
  kind?: string;
  /**
   * `lacpActive`: `linkinfo.info_data.ad_lacp_active` ("on"/"off"), which the
   * kernel reports for every bond since Linux 5.15 (absent before: such a
   * bond always sends LACPDUs unasked).
   */
  bond?: { mode: string; miimon: number; lacpActive?: boolean };
  vlan?: { id: number; protocol: string };
}

const LinkRow = z.object({
  ifname: z.string(),
  mtu: z.number(),
  flags: z.array(z.string()),
  address: z.string().optional(),
  ifalias: z.string().optional(),
  master: z.string().optional(),
  link: z.string().nullable().optional(),
  linkinfo: z
    .object({
      info_kind: z.string().optional(),
      info_data: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});

const AddrRow = z.object({
  ifname: z.string(),
  addr_info: z.array(z.object({ family: z.string(), local: z.string(), prefixlen: z.number(), scope: z.string().optional() })),
});

/** `ip -details -json link show`: every link by name, with its bond and VLAN details. Throws ParseError. */
export function parseLinks(stdout: string): Map<string, Link> {
  const rows = parseJson("ip -details -json link show", stdout, z.array(LinkRow));
  const links = new Map<string, Link>();
  for (const row of rows) {
    const kind = row.linkinfo?.info_kind;
    const data = row.linkinfo?.info_data ?? {};
    const link: Link = { name: row.ifname, mtu: row.mtu, up: row.flags.includes("UP") };
    if (row.address !== undefined) link.address = row.address;
    if (row.ifalias !== undefined) link.alias = row.ifalias;
    if (row.master !== undefined) link.master = row.master;
    if (kind !== undefined) link.kind = kind;
    if (kind === "bond") {
      link.bond = { mode: String(data.mode), miimon: Number(data.miimon) };
      if (data.ad_lacp_active === "on" || data.ad_lacp_active === "off") link.bond.lacpActive = data.ad_lacp_active === "on";
    }
    if (kind === "vlan") {
      link.vlan = { id: Number(data.id), protocol: String(data.protocol) };
      if (row.link) link.parent = row.link;
    }
    links.set(row.ifname, link);
  }
  return links;
}

/** IPv4 addresses (a.b.c.d/len) with global scope, per interface. */
export function parseAddresses(stdout: string): Map<string, string[]> {
  const rows = parseJson("ip -json addr show", stdout, z.array(AddrRow));
  const out = new Map<string, string[]>();
  for (const row of rows) {
    out.set(
      row.ifname,
      row.addr_info.filter((a) => a.family === "inet" && (a.scope ?? "global") === "global").map((a) => `${a.local}/${a.prefixlen}`),
    );
  }
  return out;
}

/** One row of `ip -json route show` (main table) or `ip -json route get`; iproute2 6.1 field names. */
export interface Route {
  /** `default`, a prefix (`10.99.0.0/24`) or an address (`ip route get`). */
  dst: string;
  gateway?: string;
  dev: string;
  metric?: number;
  /** `kernel` for the prefix route an address brings with it (it comes back with the address). */
  protocol?: string;
  scope?: string;
  prefsrc?: string;
}

const RouteRow = z.object({
  dst: z.string(),
  gateway: z.string().optional(),
  dev: z.string().optional(),
  metric: z.number().optional(),
  protocol: z.string().optional(),
  scope: z.string().optional(),
  prefsrc: z.string().optional(),
  nexthops: z.array(z.object({ gateway: z.string().optional(), dev: z.string() })).optional(),
});

/**
 * `ip -json route show` / `ip -json route show default` / `ip -json route get A`.
 * A multipath route (`nexthops`) gives one Route per hop. Throws ParseError.
 */
export function parseRoutes(stdout: string, tool = "ip -json route show"): Route[] {
  const out: Route[] = [];
  for (const row of parseJson(tool, stdout, z.array(RouteRow))) {
    const hops = row.nexthops ?? (row.dev !== undefined ? [{ gateway: row.gateway, dev: row.dev }] : []);
    for (const hop of hops) {
      const r: Route = { dst: row.dst, dev: hop.dev };
      if (hop.gateway !== undefined) r.gateway = hop.gateway;
      if (row.metric !== undefined) r.metric = row.metric;
      if (row.protocol !== undefined) r.protocol = row.protocol;
      if (row.scope !== undefined) r.scope = row.scope;
      if (row.prefsrc !== undefined) r.prefsrc = row.prefsrc;
      out.push(r);
    }
  }
  return out;
}

/** Link kinds stacked on a parent device (`link` in `ip -json link`): taking the parent down flushes their routes. */
export const STACKED_KINDS = new Set(["vlan", "macvlan", "macvtap", "ipvlan", "ipvtap"]);

/**
 * `ip -details -json link show` for the guard: parseLinks, with the parent
 * (`link`) kept for macvlan/ipvlan as well as for VLANs (parseLinks keeps it
 * for VLANs only).
 */
export function parseManagementLinks(stdout: string): Map<string, Link> {
  const links = parseLinks(stdout);
  const rows = parseJson(
    "ip -details -json link show",
    stdout,
    z.array(z.object({ ifname: z.string(), link: z.string().nullable().optional(), linkinfo: z.object({ info_kind: z.string().optional() }).optional() })),
  );
  for (const row of rows) {
    const l = links.get(row.ifname);
    if (l && l.parent === undefined && row.link && STACKED_KINDS.has(row.linkinfo?.info_kind ?? "")) l.parent = row.link;
  }
  return links;
}
