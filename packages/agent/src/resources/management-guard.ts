import { resourceId, type KernelBondSpec, type ResourceSpec } from "@netfleet/shared";
import type { Link, Route } from "./ip-json.ts";
import { describeHold, describeUpperHold, managementHolds, upperHold, type Hold, type ManagementView } from "./management-view.ts";

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
 * bond after a move) is refused too (management-disruption.ts; engine.ts). What holds the path:
 * management-view.ts; the runtime half (records, lockout check, undo):
 * management-move.ts.
 */

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

/** What the guard decided for a pass: the refused resources and the sanctioned moves. */
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
