import { resourceId, type InterfaceAddressSpec, type KernelBondSpec, type VlanInterfaceSpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { parseAddresses, parseLinks, parseRoutes, type Link, type Route } from "./ip-json.ts";
import { guardPlan, moveLines, type ManagementMove } from "./management-guard.ts";
import { ownerMarker, type Changes, type ObserveContext, type PlanContext, type ResourceHandler, type ResourcePlan } from "./types.ts";

/** Every link of the host (`ip -details -json link show`, one read per pass). */
export async function observeLinks(ctx: ObserveContext): Promise<Map<string, Link>> {
  return parseLinks((await ctx.read(ctx.tools.ip("-details", "-json", "link", "show"))).stdout);
}

/** Global IPv4 addresses per link (`ip -json addr show`, one read per pass). */
export async function observeAddresses(ctx: ObserveContext): Promise<Map<string, string[]>> {
  return parseAddresses((await ctx.read(ctx.tools.ip("-json", "addr", "show"))).stdout);
}

/** Several `ip` changes go through one `ip -batch -`; it stops at the first failing line. */
export function ipBatch(ctx: PlanContext, lines: string[][]): Command[] {
  if (lines.length === 0) return [];
  if (lines.length === 1) return [mutate(ctx.tools.ip(...lines[0]!))];
  return [mutate(ctx.tools.ip("-batch", "-"), lines.map((l) => l.join(" ")).join("\n") + "\n")];
}

/** Whether a link carries our owner mark (its alias) for `owner`. */
export function isOurs(link: Link | undefined, owner: string): boolean {
  return link?.alias === ownerMarker(owner);
}

function notOurs(kind: string, name: string, owner: string): string {
  return `${kind} ${name} exists and is not managed by netfleet; to hand it over run: ip link set dev ${name} alias ${ownerMarker(owner)}`;
}

/** What VLAN interfaces look at: the host's links. */
export interface LinkObservation {
  links: Map<string, Link>;
}

/** What a kernel bond's plan looks at: the links, and (for a management move) addresses and routes. */
export interface KernelBondObservation extends LinkObservation {
  addresses?: Map<string, string[]>;
  routes?: Route[];
}

/** The links a plan names, by name, or enslaved to `master`: what of `links` the observed hash covers (observed-hash.ts). */
function linksNamed(links: Map<string, Link>, names: readonly string[], master?: string): Link[] {
  return [...links.values()].filter((l) => names.includes(l.name) || (master !== undefined && l.master === master)).sort((a, b) => a.name.localeCompare(b.name));
}

/** `lacp_active on|off` for an 802.3ad bond whose assignment says (ip-link(8), Linux 5.15+). */
function lacpArgs(spec: KernelBondSpec): string[] {
  return spec.mode === "802.3ad" && spec.lacpActive !== undefined ? ["lacp_active", spec.lacpActive ? "on" : "off"] : [];
}

/**
 * A kernel bond. Created with the `name` keyword (a bond called `up` or
 * `master` is otherwise read as that keyword: `ip link add up type bond`
 * makes a bond the kernel names, up). With `management.address` held by a
 * member that is not yet enslaved, the same `ip -batch` moves the member's
 * addresses and routes onto the bond (management-guard.ts moveLines); the
 * engine refuses any other enslaving of a link holding the management path
 * before this plan is asked.
 */
export const kernelBond: ResourceHandler<KernelBondSpec, KernelBondObservation> = {
  kind: "kernel-bond",
  async observe(spec, ctx) {
    if (spec.management === undefined) return { links: await observeLinks(ctx) };
    const [links, addresses, routes] = await Promise.all([
      observeLinks(ctx),
      observeAddresses(ctx),
      ctx.read(ctx.tools.ip("-json", "route", "show")).then((r) => parseRoutes(r.stdout)),
    ]);
    return { links, addresses, routes };
  },
  // The bond, its members and what is enslaved to it; a management move's addresses and routes as they are.
  stable: (o, spec) => ({ ...o, links: linksNamed(o.links, [spec.name, ...spec.members], spec.name) }),
  // The members are the host's NICs, there before netfleet: up, enslaved to nothing.
  absent(spec) {
    const links = new Map(spec.members.map((name): [string, Link] => [name, { name, mtu: 1500, up: true }]));
    return spec.management === undefined ? { links } : { links, addresses: new Map(), routes: [] };
  },
  plan(spec, { links, addresses, routes }, ctx) {
    const current = links.get(spec.name);
    const missingMembers = spec.members.filter((m) => !links.has(m));
    if (missingMembers.length > 0) {
      return { changes: {}, commands: [], blocked: `bond member(s) ${missingMembers.join(", ")} do not exist on this host` };
    }
    const changes: Changes = {};
    const lines: string[][] = [];
    const enslaved = [...links.values()].filter((l) => l.master === spec.name).map((l) => l.name).sort();
    const wantMembers = [...spec.members].sort();
    // The management move: the member holding management.address (not enslaved yet).
    let move: ManagementMove | undefined;
    if (spec.management !== undefined && addresses && routes) {
      const decision = guardPlan([spec], { links, addresses, routes, controllerRoutes: [] });
      move = decision.moves.get(resourceId(spec));
    }
    const moving = move ? moveLines(move) : { before: [], after: [] };
    if (move) changes.management = { old: `${move.addresses.join(", ")} on ${move.member}`, new: `${move.addresses.join(", ")} on ${spec.name}` };
    const addMember = (m: string) => {
      if (m === move?.member) lines.push(...moving.before);
      lines.push(["link", "set", "dev", m, "down"], ["link", "set", "dev", m, "master", spec.name], ["link", "set", "dev", m, "up"]);
    };
    const create = () => {
      lines.push(["link", "add", "name", spec.name, "type", "bond", "mode", spec.mode, "miimon", String(spec.miimon), ...lacpArgs(spec)]);
      lines.push(["link", "set", "dev", spec.name, "alias", ownerMarker(ctx.owner)]);
      lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
      spec.members.forEach(addMember);
      lines.push(["link", "set", "dev", spec.name, "up"]);
    };
    const finish = (): ResourcePlan => {
      lines.push(...moving.after);
      return { changes, commands: ipBatch(ctx, lines) };
    };

    if (!current) {
      changes.present = { old: false, new: true };
      create();
      return finish();
    }
    if (current.kind !== "bond") {
      return { changes: {}, commands: [], blocked: `${spec.name} exists but is a ${current.kind ?? "plain"} device, not a bond` };
    }
    // A kernel older than 5.15 reports no lacp_active: its bonds always send LACPDUs (active).
    const lacpHave = current.bond?.lacpActive;
    const lacpWanted = spec.mode === "802.3ad" ? spec.lacpActive : undefined;
    const lacpDrift = lacpWanted !== undefined && (lacpHave ?? true) !== lacpWanted;
    const matches =
      current.bond?.mode === spec.mode &&
      current.bond.miimon === spec.miimon &&
      current.mtu === spec.mtu &&
      current.up &&
      !lacpDrift &&
      sameList(enslaved, wantMembers);
    if (!isOurs(current, ctx.owner)) {
      return matches
        ? { changes: {}, commands: [], comment: `${spec.name} is not marked as ours but already matches; left as is` }
        : { changes: {}, commands: [], blocked: notOurs("bond", spec.name, ctx.owner) };
    }
    if (lacpDrift && lacpHave === undefined) {
      return { changes: {}, commands: [], blocked: `this kernel reports no lacp_active for ${spec.name} (Linux 5.15 or later has it): its 802.3ad bonds are always LACP active, and passive was asked` };
    }
    if (current.bond?.mode !== spec.mode) {
      // The kernel refuses a mode change while the bond has members or is up:
      // release the members, take it down, change the mode, and build it up again.
      changes.mode = { old: current.bond?.mode, new: spec.mode };
      lines.push(["link", "set", "dev", spec.name, "down"]);
      for (const m of enslaved) lines.push(["link", "set", "dev", m, "nomaster"]);
      lines.push(["link", "set", "dev", spec.name, "type", "bond", "mode", spec.mode, ...lacpArgs(spec)]);
      if (lacpDrift) changes.lacpActive = { old: lacpHave, new: lacpWanted };
      if (current.bond?.miimon !== spec.miimon) {
        changes.miimon = { old: current.bond?.miimon, new: spec.miimon };
        lines.push(["link", "set", "dev", spec.name, "type", "bond", "miimon", String(spec.miimon)]);
      }
      if (current.mtu !== spec.mtu) {
        changes.mtu = { old: current.mtu, new: spec.mtu };
        lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
      }
      if (!sameList(enslaved, wantMembers)) changes.members = { old: enslaved, new: wantMembers };
      spec.members.forEach(addMember);
      lines.push(["link", "set", "dev", spec.name, "up"]);
      return finish();
    }
    if (lacpDrift) {
      // Changed with the bond down (the bonding driver may refuse it on a running bond), then up again below.
      changes.lacpActive = { old: lacpHave, new: lacpWanted };
      lines.push(["link", "set", "dev", spec.name, "down"], ["link", "set", "dev", spec.name, "type", "bond", ...lacpArgs(spec)]);
    }
    if (current.bond.miimon !== spec.miimon) {
      changes.miimon = { old: current.bond.miimon, new: spec.miimon };
      lines.push(["link", "set", "dev", spec.name, "type", "bond", "miimon", String(spec.miimon)]);
    }
    if (current.mtu !== spec.mtu) {
      changes.mtu = { old: current.mtu, new: spec.mtu };
      lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
    }
    if (!sameList(enslaved, wantMembers)) {
      changes.members = { old: enslaved, new: wantMembers };
      for (const m of enslaved) if (!spec.members.includes(m)) lines.push(["link", "set", "dev", m, "nomaster"]);
      for (const m of spec.members) if (!enslaved.includes(m)) addMember(m);
    }
    if (!current.up || lacpDrift) {
      if (!current.up) changes.up = { old: false, new: true };
      lines.push(["link", "set", "dev", spec.name, "up"]);
    }
    return finish();
  },
};

/**
 * A VLAN interface on a parent link (a bond), marked as ours by its alias.
 * One with the wrong parent or id is deleted and made again; MTU and up
 * state are set in place.
 */
export const vlanInterface: ResourceHandler<VlanInterfaceSpec, LinkObservation> = {
  kind: "vlan-interface",
  async observe(_spec, ctx) {
    return { links: await observeLinks(ctx) };
  },
  absent: () => ({ links: new Map() }),
  stable: (o, spec) => ({ links: linksNamed(o.links, [spec.name, spec.parent]) }),
  plan(spec, { links }, ctx) {
    const current = links.get(spec.name);
    const changes: Changes = {};
    const lines: string[][] = [];
    const create = () => {
      lines.push(["link", "add", "link", spec.parent, "name", spec.name, "type", "vlan", "id", String(spec.vlan)]);
      lines.push(["link", "set", "dev", spec.name, "alias", ownerMarker(ctx.owner)]);
      lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
      lines.push(["link", "set", "dev", spec.name, "up"]);
    };
    if (!current) {
      // The parent may be created earlier in this same pass (the bond); only
      // a parent that is neither present nor planned is an error, found at apply.
      changes.present = { old: false, new: true };
      create();
      return { changes, commands: ipBatch(ctx, lines) };
    }
    const matches = current.kind === "vlan" && current.vlan?.id === spec.vlan && current.parent === spec.parent;
    const settled = matches && current.mtu === spec.mtu && current.up;
    if (!isOurs(current, ctx.owner)) {
      return settled
        ? { changes: {}, commands: [], comment: `${spec.name} is not marked as ours but already matches; left as is` }
        : { changes: {}, commands: [], blocked: notOurs("VLAN interface", spec.name, ctx.owner) };
    }
    if (!matches) {
      changes.vlan = { old: `${current.parent ?? "?"}/${current.vlan?.id ?? current.kind}`, new: `${spec.parent}/${spec.vlan}` };
      lines.push(["link", "del", "dev", spec.name]);
      create();
      return { changes, commands: ipBatch(ctx, lines) };
    }
    if (current.mtu !== spec.mtu) {
      changes.mtu = { old: current.mtu, new: spec.mtu };
      lines.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
    }
    if (!current.up) {
      changes.up = { old: false, new: true };
      lines.push(["link", "set", "dev", spec.name, "up"]);
    }
    return { changes, commands: ipBatch(ctx, lines) };
  },
};

/** What an interface address looks at: the links and their global IPv4 addresses. */
export interface AddressObservation {
  links: Map<string, Link>;
  addresses: Map<string, string[]>;
}

/**
 * The IPv4 addresses of an interface netfleet created (a VLAN interface or
 * an OVS internal port): exactly the desired set, and the link up.
 */
export const interfaceAddress: ResourceHandler<InterfaceAddressSpec, AddressObservation> = {
  kind: "interface-address",
  async observe(_spec, ctx) {
    const [links, addresses] = await Promise.all([observeLinks(ctx), observeAddresses(ctx)]);
    return { links, addresses };
  },
  absent: () => ({ links: new Map(), addresses: new Map() }),
  stable: (o, spec) => ({ links: linksNamed(o.links, [spec.name]), addresses: o.addresses.get(spec.name) ?? null }),
  plan(spec, { links, addresses }, ctx) {
    const link = links.get(spec.name);
    const want = [...spec.addresses].sort();
    if (!link) {
      // Created earlier in this pass (VLAN interface or OVS internal port).
      const lines: string[][] = [];
      if (spec.mac) lines.push(["link", "set", "dev", spec.name, "address", spec.mac]);
      for (const a of want) lines.push(["addr", "add", a, "dev", spec.name]);
      lines.push(["link", "set", "dev", spec.name, "up"]);
      return { changes: { addresses: { old: [], new: want }, up: { old: false, new: true } }, commands: ipBatch(ctx, lines) };
    }
    const have = [...(addresses.get(spec.name) ?? [])].sort();
    const changes: Changes = {};
    const lines: string[][] = [];
    if (spec.mac && link.address?.toLowerCase() !== spec.mac.toLowerCase()) {
      changes.mac = { old: link.address, new: spec.mac };
      lines.push(["link", "set", "dev", spec.name, "address", spec.mac]);
    }
    if (!sameList(have, want)) {
      changes.addresses = { old: have, new: want };
      for (const a of have) if (!want.includes(a)) lines.push(["addr", "del", a, "dev", spec.name]);
      for (const a of want) if (!have.includes(a)) lines.push(["addr", "add", a, "dev", spec.name]);
    }
    if (!link.up) {
      changes.up = { old: false, new: true };
      lines.push(["link", "set", "dev", spec.name, "up"]);
    }
    return { changes, commands: ipBatch(ctx, lines) };
  },
};

/** Element-wise equality of two lists (same length, same order). */
export function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

