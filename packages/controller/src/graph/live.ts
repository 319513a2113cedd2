import type { HostView } from "@netfleet/shared";
import type { HostHealth } from "../store/status.ts";
import type { GraphElement, GraphModel } from "./types.ts";

/**
 * `netfleet graph --live`: each element's state, from the host's health
 * (store/status.ts hostHealth, what `netfleet status` says) and what its
 * agent sees now (`netfleet show`'s HostView, protocol/show.ts).
 */

/** converged: there and as desired; drift: the host or this element is not as desired; down: unreachable, link down, or absent; unknown: nothing to judge by. */
export type ElementState = "converged" | "drift" | "down" | "unknown";

/** An element's state and the reason, one line (shown in the picture's tooltip and in --json). */
export interface ElementLive {
  state: ElementState;
  reason: string;
}

/** What `--live` read of one host: its health, and its agent's view or why there is none. */
export interface HostLiveInput {
  health: HostHealth;
  view?: HostView;
  /** Why there is no view (not connected, timed out, the agent could not read). */
  error?: string;
}

/** Element id -> its state; elements without an entry are drawn as without --live. */
export type LiveStates = Record<string, ElementLive>;

const RANK: Record<ElementState, number> = { unknown: 0, converged: 1, drift: 2, down: 3 };

/**
 * The state of every element of `model`, from `hosts` (host name -> what was
 * read of it). A host: converged / drift (drift, failed, not-approved) / down
 * (unreachable); an element on a host that is down is down; with the host's
 * view, each element is judged by what the agent sees (a link up, an OVS
 * bond's members enabled and its LACP negotiated (ovs-appctl bond/show,
 * lacp/show), an OVS bridge or port present, a VM port with netfleet's
 * rules, the nft table),
 * else (nothing in the view to judge it by) it takes the host's state; with
 * no view at all, unknown on a converged host. A network takes the worst state of the
 * host elements it joins (down only when all are down), the switch and the
 * outside stay unknown. Pure.
 */
export function liveStates(model: GraphModel, hosts: ReadonlyMap<string, HostLiveInput>): LiveStates {
  const states: LiveStates = {};
  for (const e of model.elements) {
    if (e.host === undefined) continue;
    const input = hosts.get(e.host);
    states[e.id] = input ? elementState(e, input) : { state: "unknown", reason: "not read" };
  }
  for (const e of model.elements) {
    if (e.kind !== "network" && !(e.kind === "vm" && e.host === undefined)) continue;
    const joined = model.links.filter((l) => l.from === e.id || l.to === e.id).map((l) => states[l.from === e.id ? l.to : l.from]).filter((s): s is ElementLive => !!s && s.state !== "unknown");
    states[e.id] = networkState(joined);
  }
  return states;
}

function networkState(joined: ElementLive[]): ElementLive {
  if (joined.length === 0) return { state: "unknown", reason: "no host of it was read" };
  if (joined.every((s) => s.state === "down")) return { state: "down", reason: "down on every host that carries it" };
  const worst = joined.reduce((a, b) => (RANK[b.state] > RANK[a.state] ? b : a));
  if (worst.state === "converged") return { state: "converged", reason: "converged on every host that carries it" };
  return { state: "drift", reason: `not converged on every host: ${worst.reason}` };
}

/** The host's own state, from its health. */
function hostState(health: HostHealth): ElementLive {
  switch (health) {
    case "converged":
      return { state: "converged", reason: "converged: applied the desired revision" };
    case "unreachable":
      return { state: "down", reason: "unreachable: not heard from, or never enrolled" };
    case "failed":
      return { state: "drift", reason: "failed: its last apply has failed resources" };
    case "not-approved":
      return { state: "drift", reason: "not approved: waits for netfleet hosts approve" };
    case "ignored":
      return { state: "unknown", reason: "not in the inventory" };
    default:
      return { state: "drift", reason: "drift: not at its desired revision" };
  }
}

function elementState(e: GraphElement, input: HostLiveInput): ElementLive {
  const host = hostState(input.health);
  if (e.kind === "host" || host.state === "down") return host;
  const view = input.view;
  if (!view) return { state: host.state === "converged" ? "unknown" : host.state, reason: `no view from its agent${input.error ? `: ${input.error}` : ""}` };
  // What the agent sees of the element wins: a bridge that is there is converged even on a host that drifted elsewhere.
  return observed(e, view) ?? host;
}

/** What the view says of `e`; undefined when the view has nothing to judge it by. */
function observed(e: GraphElement, view: HostView): ElementLive | undefined {
  const name = e.name;
  const ports = (view.bridges ?? []).flatMap((b) => b.ports.map((p) => ({ bridge: b.name, port: p })));
  const link = view.links.find((l) => l.name === name);
  // A VXLAN endpoint without an underlay device: the route to each peer decides, nothing in the view to judge it by.
  if (e.kind === "underlay" && !name) return undefined;
  switch (e.kind) {
    case "underlay":
    case "nic":
    case "vlan":
    case "vxlan":
    case "exit": {
      // An OVS bond member (ovs-appctl bond/show) or interface (link_state) says more than the kernel link.
      const member = ports.flatMap((p) => (p.port.bond?.members ?? []).map((m) => ({ bond: p.port.name, m }))).find((x) => x.m.name === name);
      if (member && !member.m.enabled) return { state: "down", reason: `${name} disabled in bond ${member.bond}${member.m.mayEnable ? "" : " (carrier or LACP partner missing)"}` };
      const iface = ports.flatMap((p) => p.port.interfaces).find((i) => i.name === name);
      if (iface?.linkState === "down") return { state: "down", reason: `${name}: OVS link_state down` };
      if (link) {
        if (!link.up || link.member?.mii === "DOWN") return { state: "down", reason: `${name} is down (${link.state ?? "not up"})` };
        return { state: "converged", reason: `${name} is up` };
      }
      // An ovs-trunk NIC may be seen only as an OVS interface.
      if (ports.some((p) => p.port.interfaces.some((i) => i.name === name))) return { state: "converged", reason: `${name} is an OVS interface` };
      return { state: e.kind === "exit" ? "down" : "drift", reason: `${name} not found` };
    }
    case "bond": {
      const bond = ports.find((p) => p.port.name === name)?.port.bond;
      if (bond) {
        const off = bond.members.filter((m) => !m.enabled).map((m) => m.name);
        if (bond.members.length > 0 && off.length === bond.members.length) return { state: "down", reason: `every member of bond ${name} disabled` };
        if (bond.lacpStatus === "configured") return { state: "drift", reason: `bond ${name}: LACP configured but not negotiated with the switch` };
        if (off.length) return { state: "drift", reason: `bond ${name}: member ${off.join(", ")} disabled` };
        return { state: "converged", reason: `OVS bond ${name}: ${bond.members.length} members enabled, LACP ${bond.lacpStatus ?? "off"}` };
      }
      if (link) return link.up ? { state: "converged", reason: `bond ${name} is up` } : { state: "down", reason: `bond ${name} is down` };
      if (ports.some((p) => p.port.name === name)) return { state: "converged", reason: `OVS bond ${name} present` };
      return { state: "drift", reason: `bond ${name} not found` };
    }
    case "trunk":
    case "bridge": {
      if (view.bridges === undefined) return undefined;
      return view.bridges.some((b) => b.name === name) ? { state: "converged", reason: `OVS bridge ${name} present` } : { state: "drift", reason: `OVS bridge ${name} missing` };
    }
    case "patch":
    case "gateway-port": {
      if (view.bridges === undefined) return undefined;
      return ports.some((p) => p.port.name === name) ? { state: "converged", reason: `OVS port ${name} present` } : { state: "drift", reason: `OVS port ${name} missing` };
    }
    case "vm": {
      const port = view.vmPorts.find((p) => p.mac.toLowerCase() === e.mac);
      if (!port) return { state: "down", reason: "no port with its MAC: the VM is not running here" };
      if (!port.hasRules) return { state: "drift", reason: `port ${port.port} has no netfleet rules` };
      return { state: "converged", reason: `port ${port.port} on ${port.bridge} with its rules` };
    }
    case "gateway": {
      if (!view.nft) return undefined;
      return view.nft.exists ? { state: "converged", reason: "nft table inet netfleet present" } : { state: "drift", reason: "nft table inet netfleet missing" };
    }
    default:
      return undefined;
  }
}
