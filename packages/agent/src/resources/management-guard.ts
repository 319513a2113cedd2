import { z } from "zod";
import { resourceId, type KernelBondSpec, type ResourceSpec } from "@netfleet/shared";
import type { Command } from "../exec/runner.ts";
import { parseJson, parseLinks, type Link } from "./ip-link.ts";

/**
 * The management-link guard: pure planning over what `ip` reports. A link
 * "holds the management path" when it has a global IPv4 address, is the
 * device of a default route, or of the route towards the controller. A plan
 * that would enslave such a link (a kernel bond member, an OVS system or bond
 * member port) cuts the host off its controller: it is refused, unless the
 * kernel bond's assignment says the management address moves onto the bond
 * (`management.address`, from the uplink's `carries_management: true`) and
 * the member itself holds it. A link above the member holding the path (a
 * bridge or another bond it is a port of, a VLAN/macvlan/ipvlan on it) refuses
 * the enslaving, moved never (upperHold). A plan that takes down, releases the
 * members of, changes the mode of or deletes a link holding the path (e.g. the
 * bond after a move) is refused too (disruptions, disruptionRefusal; engine.ts).
 */

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

/** What the guard looks at: links, global IPv4 addresses per link, main-table routes, the routes to the controllers. */
export interface ManagementView {
  links: Map<string, Link>;
  addresses: Map<string, string[]>;
  routes: Route[];
  /** `ip route get <controller>` for each controller address the agent knows (fleet mode: its NATS servers). */
  controllerRoutes: { controller: string; route: Route }[];
}

/** Why a link carries the management path. */
export interface Hold {
  link: string;
  /** Global IPv4 addresses, a.b.c.d/len. */
  addresses: string[];
  /** Every main-table route through the link that does not come back by itself with an address (not `proto kernel`). */
  routes: Route[];
  defaultRoute?: Route;
  controller?: { controller: string; route: Route };
}

/** Links holding the management path, by name. */
export function managementHolds(view: ManagementView): Map<string, Hold> {
  const holds = new Map<string, Hold>();
  const hold = (link: string): Hold => {
    let h = holds.get(link);
    if (!h) {
      h = { link, addresses: [], routes: view.routes.filter((r) => r.dev === link && r.protocol !== "kernel") };
      holds.set(link, h);
    }
    return h;
  };
  for (const [link, addrs] of view.addresses) if (addrs.length > 0) hold(link).addresses = [...addrs];
  for (const r of view.routes) if (r.dst === "default") hold(r.dev).defaultRoute ??= r;
  for (const c of view.controllerRoutes) hold(c.route.dev).controller ??= c;
  return holds;
}

/** "holds 10.0.0.5/24 and the default route via 10.0.0.1" (the facts, for messages). */
export function describeHold(h: Hold): string {
  const facts: string[] = [];
  if (h.addresses.length > 0) facts.push(h.addresses.join(", "));
  if (h.defaultRoute) facts.push(`the default route${h.defaultRoute.gateway ? ` via ${h.defaultRoute.gateway}` : ""}`);
  if (h.controller && h.controller.route.dst !== "default") {
    facts.push(`the route to the controller ${h.controller.controller}${h.controller.route.gateway ? ` via ${h.controller.route.gateway}` : ""}`);
  }
  return `${h.link} holds ${facts.join(" and ")}`;
}

/**
 * The links a resource would enslave now, with what they would join: kernel
 * bond members not yet in the bond; an OVS bridge's system ports and bond
 * members not yet in OVS (`master ovs-system`).
 */
export function enslaving(spec: ResourceSpec, links: Map<string, Link>): { link: string; into: string }[] {
  if (spec.kind === "kernel-bond") {
    return spec.members.filter((m) => links.get(m)?.master !== spec.name).map((m) => ({ link: m, into: spec.name }));
  }
  if (spec.kind === "ovs-bridge") {
    const out: { link: string; into: string }[] = [];
    for (const p of spec.ports) {
      const nics = p.type === "system" ? [p.name] : p.type === "bond" ? (p.members ?? []) : [];
      for (const n of nics) if (links.get(n)?.master !== "ovs-system") out.push({ link: n, into: `OVS bridge ${spec.name}${p.type === "bond" ? ` (bond ${p.name})` : ""}` });
    }
    return out;
  }
  return [];
}

/** Link kinds stacked on a parent device (`link` in `ip -json link`): taking the parent down flushes their routes. */
const STACKED_KINDS = new Set(["vlan", "macvlan", "macvtap", "ipvlan", "ipvtap"]);

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

/** A link above another that holds the management path, and how it sits above it. */
export interface UpperHold {
  hold: Hold;
  /** "eth0 is a port of br0", "eth0 carries eth0.10 (vlan)", in order from the link up to the holder. */
  chain: string[];
}

/**
 * The first link above `link` that holds the management path: its master
 * (unless `ovs-system` or `building`, the bond being built) and every
 * vlan/macvlan/ipvlan whose parent it is, followed transitively (bounded).
 */
export function upperHold(link: string, links: Map<string, Link>, holds: Map<string, Hold>, building?: string): UpperHold | undefined {
  const seen = new Set([link]);
  let frontier: { name: string; chain: string[] }[] = [{ name: link, chain: [] }];
  for (let depth = 0; depth < 8 && frontier.length > 0; depth++) {
    const next: { name: string; chain: string[] }[] = [];
    for (const { name, chain } of frontier) {
      const ups: { name: string; step: string }[] = [];
      const master = links.get(name)?.master;
      if (master !== undefined && master !== "ovs-system" && master !== building) ups.push({ name: master, step: `${name} is a port of ${master}` });
      for (const l of links.values()) {
        if (l.parent === name && STACKED_KINDS.has(l.kind ?? "")) ups.push({ name: l.name, step: `${name} carries ${l.name} (${l.kind})` });
      }
      for (const up of ups) {
        if (seen.has(up.name)) continue;
        seen.add(up.name);
        const c = [...chain, up.step];
        const h = holds.get(up.name);
        if (h) return { hold: h, chain: c };
        next.push({ name: up.name, chain: c });
      }
    }
    frontier = next;
  }
  return undefined;
}

/** "eth0 is a port of br0, which holds 10.0.0.11/24 and the default route via 10.0.0.1". */
export function describeUpperHold(u: UpperHold): string {
  return `${u.chain.join(", ")}, which ${describeHold(u.hold).slice(u.hold.link.length + 1)}`;
}

/** What a planned command does to a link that matters to the management path. */
export interface LinkDisruption {
  op: "down" | "nomaster" | "mode" | "del";
  link: string;
}

/**
 * The link-level disruptions in planned commands: `ip link set dev X down`,
 * `... nomaster`, `... type bond mode M`, `ip link del [dev] X` (alone or in an
 * `ip -batch -`), and `ovs-vsctl ... del-br X`.
 */
export function disruptions(commands: readonly Command[]): LinkDisruption[] {
  const out: LinkDisruption[] = [];
  const ipLine = (args: string[]) => {
    let i = 0;
    while (i < args.length && args[i]!.startsWith("-")) i++;
    const a = args.slice(i);
    if (a[0] !== "link" && a[0] !== "l") return;
    if (a[1] === "del" || a[1] === "delete") {
      const name = a[2] === "dev" ? a[3] : a[2];
      if (name) out.push({ op: "del", link: name });
      return;
    }
    if (a[1] !== "set") return;
    const name = a[2] === "dev" ? a[3] : a[2];
    if (!name) return;
    const rest = a.slice(a[2] === "dev" ? 4 : 3);
    if (rest.includes("down")) out.push({ op: "down", link: name });
    if (rest.includes("nomaster")) out.push({ op: "nomaster", link: name });
    const t = rest.indexOf("type");
    if (t >= 0 && rest.slice(t + 1).includes("mode")) out.push({ op: "mode", link: name });
  };
  for (const c of commands) {
    if (c.builtin || !c.mutating) continue;
    const tool = c.argv[0]?.split("/").pop();
    if (tool === "ip") {
      const args = c.argv.slice(1);
      if (args.includes("-batch")) for (const line of (c.stdin ?? "").split("\n")) ipLine(line.trim().split(/\s+/).filter(Boolean));
      else ipLine(args);
    } else if (tool === "ovs-vsctl") {
      c.argv.forEach((a, i) => {
        if (a === "del-br" && c.argv[i + 1]) out.push({ op: "del", link: c.argv[i + 1]! });
      });
    }
  }
  return out;
}

/**
 * Why a plan may not run because it takes down, releases the members of,
 * changes the mode of or deletes a link holding the management path (or a
 * link under one that does); undefined when it may. `exempt`: the member a
 * sanctioned management move takes down (its address goes onto the bond).
 */
export function disruptionRefusal(ops: readonly LinkDisruption[], view: ManagementView, exempt?: string): string | undefined {
  // Here a link holds the path when it carries the default route, the route to a controller or
  // another routed (not `proto kernel`) route: an address alone is what every gateway VLAN of a
  // backend has, and those are deleted and re-made by ordinary plans.
  const holds = new Map([...managementHolds(view)].filter(([, h]) => h.defaultRoute !== undefined || h.controller !== undefined || h.routes.length > 0));
  const reasons: string[] = [];
  const said = new Set<string>();
  for (const { op, link } of ops) {
    if (op === "down" && link === exempt) continue;
    let what: string | undefined;
    let holder: string | undefined;
    const direct = holds.get(link);
    if (op === "nomaster") {
      const master = view.links.get(link)?.master;
      if (master === undefined || master === "ovs-system") continue;
      const m = holds.get(master);
      const u = m ? undefined : upperHold(master, view.links, holds);
      if (!m && !u) continue;
      what = `releasing ${link} from ${master} would cut this host off its controller: ${m ? describeHold(m) : describeUpperHold(u!)}`;
      holder = m ? master : u!.hold.link;
    } else {
      const u = direct ? undefined : upperHold(link, view.links, holds);
      if (!direct && !u) continue;
      const verb = op === "down" ? `taking ${link} down` : op === "mode" ? `changing the mode of ${link} (the kernel wants it down and its members released for that)` : `deleting ${link}`;
      what = `${verb} would cut this host off its controller: ${direct ? describeHold(direct) : describeUpperHold(u!)}`;
      holder = direct ? link : u!.hold.link;
    }
    if (said.has(what)) continue;
    said.add(what);
    reasons.push(`${what}; move the management address and routes off ${holder} first, or make this change from the console`);
  }
  return reasons.length > 0 ? reasons.join("; ") : undefined;
}

/** The move of the management path from one member onto a kernel bond: what is recorded before, and undone on failure. */
export interface ManagementMove {
  bond: string;
  /** Every member of the bond (all are released by an undo). */
  members: string[];
  /** The member that held the path. */
  member: string;
  /** The management address (a.b.c.d/len) the assignment moves. */
  address: string;
  /** The member's global IPv4 addresses (the management address among them), all moved. */
  addresses: string[];
  /** The routes through the member, re-added with `dev <bond>` (the default route among them). */
  routes: Route[];
  /** The address that must answer through the bond afterwards: the default gateway, else the controller. */
  target?: string;
}

/** A move that failed its lockout check earlier (recorded in the state dir): the guard refuses it again until the record is removed. */
export interface FailedMove {
  bond: string;
  address: string;
  member: string;
  at: string;
  reason: string;
}

export interface GuardDecision {
  /** resource id -> why nothing of it runs (the resource itself, and everything naming a link it would have made). */
  blocked: Map<string, string>;
  /** resource id of a kernel bond -> the move its plan makes. */
  moves: Map<string, ManagementMove>;
}

/**
 * Decides, before any command of a pass runs, which resources may not run
 * because they would cut the host off its management path, and which kernel
 * bonds move the management address onto themselves.
 */
export function guardPlan(resources: readonly ResourceSpec[], view: ManagementView, options: { failed?: FailedMove; failedFile?: string } = {}): GuardDecision {
  const holds = managementHolds(view);
  const blocked = new Map<string, string>();
  const moves = new Map<string, ManagementMove>();
  /** Blocked link name -> the first reason, for the messages of what depends on it. */
  const names = new Map<string, string>();
  for (const spec of resources) {
    const id = resourceId(spec);
    const reasons: string[] = [];
    for (const { link, into } of enslaving(spec, view.links)) {
      const joining = spec.kind === "kernel-bond" ? `enslaving it to ${spec.name}` : `adding it to ${into}`;
      // A link above it holding the path (a bridge it is a port of, a VLAN or macvlan on it): never moved.
      const upper = upperHold(link, view.links, holds, spec.kind === "kernel-bond" ? spec.name : undefined);
      if (upper) {
        reasons.push(
          `${describeUpperHold(upper)}; ${joining} would cut this host off its controller; ` +
            `move the management address and routes off ${upper.hold.link} first, or make this change from the console`,
        );
        continue;
      }
      const h = holds.get(link);
      if (!h) continue;
      const move = spec.kind === "kernel-bond" ? planMove(spec, h, view) : undefined;
      if (move) {
        const f = options.failed;
        if (f && f.bond === spec.name && f.member === link && f.address === move.address) {
          reasons.push(
            `moving ${f.address} from ${link} onto ${spec.name} failed its lockout check at ${f.at} (${f.reason}) and was undone; ` +
              `fix the path through ${spec.name} (switch ports, cabling, VLANs), then remove ${options.failedFile ?? "the failed-move record"} to try again`,
          );
        } else if (moves.has(id)) {
          reasons.push(`${describeHold(h)} as well; only one member's management path can move onto ${spec.name}`);
        } else moves.set(id, move);
        continue;
      }
      const remedy =
        spec.kind === "kernel-bond"
          ? `set carries_management: true on the uplink to move the address onto the bond, or move it off ${link}`
          : `move it off ${link} first (OVS does not carry ${link}'s own address once it is a port)`;
      reasons.push(`${describeHold(h)}; ${joining} would cut this host off its controller; ${remedy}`);
    }
    if (reasons.length > 0) {
      blocked.set(id, reasons.join("; "));
      names.set(spec.name, reasons[0]!.split(";")[0]!);
      moves.delete(id);
    }
  }
  // Everything that names a blocked link, transitively (VLAN interfaces on a blocked bond,
  // their addresses, bridges holding them, libvirt networks and dnsmasq on those).
  for (let changed = true, rounds = 0; changed && rounds <= resources.length; rounds++) {
    changed = false;
    for (const spec of resources) {
      const id = resourceId(spec);
      if (blocked.has(id)) continue;
      const hit = stringsOf(spec).find((s) => names.has(s));
      if (hit !== undefined) {
        blocked.set(id, `not applied: it depends on ${hit}, which was refused (${names.get(hit)})`);
        names.set(spec.name, names.get(hit)!);
        changed = true;
      }
    }
  }
  return { blocked, moves };
}

/** A kernel bond with `management.address` held by this member: the move, else undefined. */
function planMove(spec: KernelBondSpec, h: Hold, view: ManagementView): ManagementMove | undefined {
  const address = spec.management?.address;
  if (address === undefined || !h.addresses.includes(address)) return undefined;
  const target = h.defaultRoute?.gateway ?? h.controller?.route.gateway ?? h.controller?.controller ?? view.controllerRoutes[0]?.controller;
  return { bond: spec.name, members: [...spec.members], member: h.link, address, addresses: [...h.addresses], routes: h.routes.map((r) => ({ ...r })), ...(target ? { target } : {}) };
}

function stringsOf(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(stringsOf);
  if (value && typeof value === "object") return Object.values(value).flatMap(stringsOf);
  return [];
}

/** `route replace` arguments for a route on `dev` (dst, via, metric, src, scope as recorded). */
export function routeArgs(r: Route, dev: string): string[] {
  const args = ["route", "replace", r.dst];
  if (r.gateway) args.push("via", r.gateway);
  args.push("dev", dev);
  if (r.metric !== undefined) args.push("metric", String(r.metric));
  if (r.prefsrc) args.push("src", r.prefsrc);
  if (r.scope && r.scope !== "universe" && !r.gateway) args.push("scope", r.scope);
  return args;
}

/**
 * The `ip -batch` lines of a move, around the bond's own lines: `before` runs
 * ahead of the member going down (its addresses leave it, so they are not
 * left on a slave), `after` once the bond is up (the addresses and routes on
 * the bond).
 */
export function moveLines(move: ManagementMove): { before: string[][]; after: string[][] } {
  return {
    before: move.addresses.map((a) => ["addr", "del", a, "dev", move.member]),
    after: [...move.addresses.map((a) => ["addr", "add", a, "dev", move.bond]), ...move.routes.map((r) => routeArgs(r, move.bond))],
  };
}

/**
 * The lines that undo a move (for `ip -force -batch -`, which goes on past a
 * failing line): members released, the addresses off the bond and back on
 * the member, the member up, its routes as they were.
 */
export function undoLines(move: ManagementMove): string[][] {
  return [
    ...move.members.map((m) => ["link", "set", "dev", m, "nomaster"]),
    ...move.addresses.map((a) => ["addr", "del", a, "dev", move.bond]),
    ...move.members.map((m) => ["link", "set", "dev", m, "up"]),
    ...move.addresses.map((a) => ["addr", "add", a, "dev", move.member]),
    ...move.routes.map((r) => routeArgs(r, move.member)),
  ];
}
