import { STACKED_KINDS, type Link, type Route } from "./ip-json.ts";

/**
 * What holds the management path (management-guard.ts): a link with a
 * global IPv4 address, the device of a default route or of the route
 * towards a controller, and the links above a link that do (its master,
 * a VLAN/macvlan/ipvlan on it).
 */

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
