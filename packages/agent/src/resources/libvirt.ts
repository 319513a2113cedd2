import { join } from "node:path";
import { XMLBuilder, XMLParser } from "fast-xml-parser";
import { ParseError, unifiedDiff, type LibvirtNetworkSpec } from "@netfleet/shared";
import { ExecError, mutate, writeFileStep, type Command } from "../exec/runner.ts";
import type { Changes, ObserveContext, PlanContext, ResourceHandler } from "./types.ts";

/** The XML namespace of our owner mark in a network's <metadata>. */
export const OWNER_XMLNS = "https://netfleet.dev/xmlns/owner/1";

/** A libvirt network as far as we manage it. */
export interface LibvirtNetworkState {
  name: string;
  uuid?: string;
  owner?: string;
  forwardMode?: string;
  bridge?: string;
  virtualport?: string;
  /** `vlan`: a tag on the portgroup (we define none: a VLAN tag on a VM port behind a tagged uplink double-tags). */
  portgroups: { name: string; default: boolean; profileId?: string; vlan?: number }[];
  active: boolean;
  autostart: boolean;
  persistent: boolean;
}

/** A network as observed: whether libvirt has it, and its definition and state when it does. */
export interface LibvirtObservation {
  exists: boolean;
  state?: LibvirtNetworkState;
  /** The definition as `virsh net-dumpxml --inactive` printed it (the diff's live side). */
  xml?: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  removeNSPrefix: false,
  isArray: (name) => name === "portgroup" || name === "tag",
});

/** Parses `virsh net-dumpxml` output. */
export function parseNetworkXml(xml: string): Omit<LibvirtNetworkState, "active" | "autostart" | "persistent"> {
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml) as Record<string, unknown>;
  } catch (err) {
    throw new ParseError("virsh net-dumpxml", (err as Error).message, { cause: err });
  }
  const net = doc.network as Record<string, unknown> | undefined;
  if (!net || typeof net.name !== "string") throw new ParseError("virsh net-dumpxml", "no <network><name>");
  const attr = (node: unknown, key: string): string | undefined => {
    const v = (node as Record<string, unknown> | undefined)?.[`@${key}`];
    return v === undefined ? undefined : String(v);
  };
  let owner: string | undefined;
  const metadata = net.metadata as Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if (!key.endsWith(":owner") && key !== "owner") continue;
    const node = value as Record<string, unknown> | string;
    const ns = typeof node === "object" ? Object.entries(node).find(([k]) => k.startsWith("@xmlns"))?.[1] : undefined;
    if (ns === OWNER_XMLNS) owner = String((node as Record<string, unknown>)["#text"] ?? "");
  }
  const portgroups = ((net.portgroup as unknown[] | undefined) ?? []).map((pg) => {
    const vlan = (pg as Record<string, unknown>).vlan as Record<string, unknown> | undefined;
    const tags = (vlan?.tag as unknown[] | undefined) ?? [];
    const out: { name: string; default: boolean; profileId?: string; vlan?: number } = { name: attr(pg, "name") ?? "", default: attr(pg, "default") === "yes" };
    const params = ((pg as Record<string, unknown>).virtualport as Record<string, unknown> | undefined)?.parameters;
    const profileId = attr(params, "profileid");
    if (profileId !== undefined) out.profileId = profileId;
    if (tags.length > 0) out.vlan = Number(attr(tags[0], "id"));
    return out;
  });
  const state: Omit<LibvirtNetworkState, "active" | "autostart" | "persistent"> = { name: net.name, portgroups };
  if (typeof net.uuid === "string") state.uuid = net.uuid;
  if (owner !== undefined) state.owner = owner;
  const forward = attr(net.forward, "mode");
  if (forward !== undefined) state.forwardMode = forward;
  const bridge = attr(net.bridge, "name");
  if (bridge !== undefined) state.bridge = bridge;
  const vp = attr(net.virtualport, "type");
  if (vp !== undefined) state.virtualport = vp;
  return state;
}

/** A network's run state, as `virsh net-list --all` shows it. */
export interface NetState {
  active: boolean;
  autostart: boolean;
  persistent: boolean;
}

/**
 * Parses `virsh -q net-list --all`: one row per network, "Name State
 * Autostart Persistent" (the header is left out by -q). One call gives what
 * `net-info` gives per network.
 */
export function parseNetList(text: string): Map<string, NetState> {
  const out = new Map<string, NetState>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const m = /^\s*(\S.*?)\s+(active|inactive)\s+(yes|no)\s+(yes|no)\s*$/.exec(line);
    if (!m) throw new ParseError("virsh net-list --all", `unexpected line ${JSON.stringify(line)}`);
    out.set(m[1]!, { active: m[2] === "active", autostart: m[3] === "yes", persistent: m[4] === "yes" });
  }
  return out;
}

/** Parses `virsh net-info NAME` ("Active: yes" lines). */
export function parseNetInfo(text: string): NetState {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z ]+):\s+(.*)$/.exec(line.trim());
    if (m) fields.set(m[1]!.trim().toLowerCase(), m[2]!.trim());
  }
  for (const key of ["active", "autostart", "persistent"]) {
    if (!fields.has(key)) throw new ParseError("virsh net-info", `no "${key}" line`);
  }
  return { active: fields.get("active") === "yes", autostart: fields.get("autostart") === "yes", persistent: fields.get("persistent") === "yes" };
}

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: "@", format: true, indentBy: "  ", suppressEmptyNode: true });

/**
 * The XML we define: deterministic, with our owner mark in <metadata>, and
 * the uuid when updating. Names and the owner are escaped (XMLBuilder's
 * entities), so whatever they hold the document stays well-formed.
 */
export function networkXml(spec: LibvirtNetworkSpec, owner: string, uuid?: string): string {
  const portgroup = (pg: LibvirtNetworkSpec["portgroups"][number]) => ({
    "@name": pg.name,
    ...(pg.default ? { "@default": "yes" } : {}),
    // libvirt copies profileid into the OVS Interface's external_ids:port-profile (virnetdevopenvswitch.c).
    ...(pg.profileId === undefined ? {} : { virtualport: { "@type": "openvswitch", parameters: { "@profileid": pg.profileId } } }),
  });
  return builder.build({
    network: {
      name: spec.name,
      ...(uuid ? { uuid } : {}),
      metadata: { "nf:owner": { "@xmlns:nf": OWNER_XMLNS, "#text": owner } },
      forward: { "@mode": "bridge" },
      bridge: { "@name": spec.bridge },
      virtualport: { "@type": "openvswitch" },
      portgroup: spec.portgroups.map(portgroup),
    },
  }) as string;
}

/**
 * An XML document in the form networkXml writes (parsed and built again:
 * double quotes, two-space indent, empty elements closed), so that a diff
 * of libvirt's output against ours shows content, not quoting.
 * @throws ParseError when `xml` is not XML.
 */
export function canonicalXml(xml: string): string {
  try {
    return builder.build(parser.parse(xml)) as string;
  } catch (err) {
    throw new ParseError("virsh net-dumpxml", (err as Error).message, { cause: err });
  }
}

/** The network's definition as libvirt has it, canonical; rebuilt from the parsed state when the raw XML is not at hand. */
function liveXml(observed: LibvirtObservation): string | undefined {
  if (!observed.exists || !observed.state) return undefined;
  if (observed.xml !== undefined) return canonicalXml(observed.xml);
  const s = observed.state;
  return builder.build({
    network: {
      name: s.name,
      ...(s.uuid ? { uuid: s.uuid } : {}),
      ...(s.owner !== undefined ? { metadata: { "nf:owner": { "@xmlns:nf": OWNER_XMLNS, "#text": s.owner } } } : {}),
      ...(s.forwardMode ? { forward: { "@mode": s.forwardMode } } : {}),
      ...(s.bridge ? { bridge: { "@name": s.bridge } } : {}),
      ...(s.virtualport ? { virtualport: { "@type": s.virtualport } } : {}),
      portgroup: s.portgroups.map((pg) => ({
        "@name": pg.name,
        ...(pg.default ? { "@default": "yes" } : {}),
        ...(pg.profileId === undefined ? {} : { virtualport: { "@type": "openvswitch", parameters: { "@profileid": pg.profileId } } }),
        ...(pg.vlan === undefined ? {} : { vlan: { tag: [{ "@id": pg.vlan }] } }),
      })),
    },
  }) as string;
}

/** The diff of a (re)definition: libvirt's definition → the one the plan defines. */
function defineDiff(spec: LibvirtNetworkSpec, observed: LibvirtObservation, owner: string): string {
  const name = spec.name;
  return unifiedDiff(liveXml(observed), networkXml(spec, owner, observed.state?.uuid), { before: `live: virsh net-dumpxml --inactive ${name}`, after: `desired: network ${name}` });
}

/**
 * Where the agent writes the XML it defines. `virsh net-define` takes a file:
 * `/dev/stdin` only works when stdin is a file or a pipe virsh can reopen,
 * and under execa it is a socket ("No such device or address"). The file is
 * rewritten before every define and left in place as a record of it.
 */
export function networkXmlPath(runDir: string, network: string): string {
  return join(runDir, "libvirt", `${network}.xml`);
}

/** Writes the definition into the run dir, then `virsh net-define FILE`. */
function defineCommands(spec: LibvirtNetworkSpec, ctx: PlanContext, uuid?: string): Command[] {
  const path = networkXmlPath(ctx.tools.runDir, spec.name);
  return [writeFileStep(path, networkXml(spec, ctx.owner, uuid)), mutate(ctx.tools.virsh("net-define", path))];
}

/** Every libvirt network with its state, from one `virsh net-list --all` (shared by all resources of a pass). */
export async function observeNetworks(ctx: ObserveContext): Promise<Map<string, NetState>> {
  return parseNetList((await ctx.read(ctx.tools.virsh("net-list", "--all"))).stdout);
}

/**
 * A libvirt network on an OVS bridge (forward mode bridge, virtualport
 * openvswitch, portgroups), persistent, autostarted and started.
 */
export const libvirtNetwork: ResourceHandler<LibvirtNetworkSpec, LibvirtObservation> = {
  kind: "libvirt-network",
  async observe(spec, ctx) {
    // Both reads at once: the runner gives the reads of one turn one virsh process (exec/virsh-batch.ts).
    // Its XML is asked for before knowing the network exists; that read's failure matters only when it does.
    const dump = ctx.tools.virsh("net-dumpxml", "--inactive", spec.name);
    const [networks, xml] = await Promise.all([observeNetworks(ctx), ctx.read(dump, { allowFailure: true }).catch((err: unknown) => err as Error)]);
    const info = networks.get(spec.name);
    if (!info) return { exists: false };
    if (xml instanceof Error) throw xml;
    if (xml.exitCode !== 0) throw new ExecError(dump, xml.exitCode, xml.stderr);
    return { exists: true, state: { ...parseNetworkXml(xml.stdout), ...info }, xml: xml.stdout };
  },
  absent: () => ({ exists: false }),
  plan(spec, observed, ctx) {
    const v = ctx.tools.virsh.bind(ctx.tools);
    const changes: Changes = {};
    const commands: Command[] = [];
    const state = observed.state;
    if (!observed.exists || !state) {
      changes.present = { old: false, new: true };
      commands.push(...defineCommands(spec, ctx));
      commands.push(mutate(v("net-autostart", spec.name)), mutate(v("net-start", spec.name)));
      return { changes, commands, diff: defineDiff(spec, observed, ctx.owner) };
    }
    if (state.owner !== ctx.owner) {
      return {
        changes: {},
        commands: [],
        blocked: `libvirt network ${spec.name} exists and is not managed by netfleet (no owner metadata for site ${ctx.owner}); undefine it or add the metadata to hand it over`,
      };
    }
    const want = { forwardMode: "bridge", bridge: spec.bridge, virtualport: "openvswitch", portgroups: spec.portgroups };
    const have = { forwardMode: state.forwardMode, bridge: state.bridge, virtualport: state.virtualport, portgroups: state.portgroups };
    for (const key of Object.keys(want) as (keyof typeof want)[]) {
      if (JSON.stringify(want[key]) !== JSON.stringify(have[key])) changes[key] = { old: have[key], new: want[key] };
    }
    const redefine = Object.keys(changes).length > 0 || !state.persistent;
    if (redefine) {
      if (!state.persistent) changes.persistent = { old: false, new: true };
      commands.push(...defineCommands(spec, ctx, state.uuid));
      // A running network keeps its old definition until restarted.
      if (state.active) commands.push(mutate(v("net-destroy", spec.name)), mutate(v("net-start", spec.name)));
    }
    if (!state.autostart) {
      changes.autostart = { old: false, new: true };
      commands.push(mutate(v("net-autostart", spec.name)));
    }
    if (!state.active) {
      changes.active = { old: false, new: true };
      commands.push(mutate(v("net-start", spec.name)));
    }
    const diff = redefine ? defineDiff(spec, observed, ctx.owner) : "";
    return diff ? { changes, commands, diff } : { changes, commands };
  },
};
