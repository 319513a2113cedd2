import { basename, dirname, join } from "node:path";
import { NETWORK_NAME, type PruneSpec } from "@netfleet/shared";
import { ExecError, mutate, removeFileStep, waitExitStep, type Command } from "../exec/runner.ts";
import { dnsmasqFiles, dnsmasqOwner, isOurDnsmasq } from "./dnsmasq.ts";
import type { Link } from "./ip-json.ts";
import { isOurs, observeLinks } from "./ip-link.ts";
import { networkXmlPath, observeNetworks, parseNetworkXml } from "./libvirt.ts";
import { observeNftTable } from "./nft.ts";
import { OWNER_KEY } from "./ovs.ts";
import { observeStaleMirrors, pruneMirrorsCommands, type StaleMirrors } from "./ovs-mirror-prune.ts";
import { observeStaleVxlanFilters, pruneVxlanFiltersCommands } from "./vxlan-interface-prune.ts";
import { emptyOvsState, observeOvs, type OvsState } from "./ovsdb.ts";
import { pruneSamplingCommands, staleSampling, type StaleSampling } from "./ovs-sampling.ts";
import type { Changes, ObserveContext, ResourceHandler } from "./types.ts";

/** A dnsmasq of ours (its config carries our mark) for a network no longer served here. */
export interface StaleDnsmasq {
  network: string;
  /** The pid of the dnsmasq running our config, if one does. */
  pid?: number;
  /** Its files that exist, the config last. */
  files: string[];
}

/** What prune looks at: every link and OVS bridge (only those marked as ours are removed), and our networks, dnsmasqs, table and files. */
export interface PruneObservation {
  links: Map<string, Link>;
  ovs: OvsState;
  /** Networks carrying our owner mark, with whether they run. */
  libvirt: { name: string; active: boolean }[];
  /** Our dnsmasqs of networks not kept. */
  dnsmasq?: StaleDnsmasq[];
  /** Whether the table `inet netfleet` exists and carries our structure mark. */
  nftTable?: boolean;
  /** Network XML files we wrote (owner mark inside) for networks not kept. */
  libvirtFiles?: string[];
  /** Daemons that do not run on this host (so hold nothing of ours), e.g. a kernel-mode backend's. */
  absent?: ("ovsdb-server" | "libvirtd")[];
  /** Mirror rows and mirror tunnel ports of ours no longer kept (ovs-mirror-prune.ts). */
  mirrors?: StaleMirrors;
  /** sFlow/IPFIX rows of ours on kept bridges without an ovs-sampling resource (ovs-sampling.ts). */
  sampling?: StaleSampling[];
  /** Source-filter tables of ours (inet netfleet-vx-<network>) of VXLAN devices not kept (vxlan-interface-prune.ts). */
  vxlanFilters?: string[];
}

/*
 * What the tools print when their daemon is not running at all: no socket
 * (never started, or not installed), or a socket nobody listens on (it died).
 * Real text, see __fixtures__/daemons/. Anything else (permission denied, a
 * timeout, a parse error) stays an error: then we cannot tell what is there.
 */
const OVSDB_NOT_RUNNING = /^ovs-vsctl: unix:[^\n]*: database connection failed \((?:No such file or directory|Connection refused)\)$/m;
const LIBVIRTD_NOT_RUNNING = /^error: Failed to connect socket to '[^'\n]*': (?:No such file or directory|Connection refused)$/m;

/** True when `err` is the tool saying its daemon does not run here (and nothing else). */
export function daemonNotRunning(daemon: "ovsdb-server" | "libvirtd", err: unknown): boolean {
  if (!(err instanceof ExecError) || err.exitCode !== 1) return false;
  if (daemon === "ovsdb-server") return err.argv[0] === "ovs-vsctl" && OVSDB_NOT_RUNNING.test(err.stderr);
  return err.argv[0] === "virsh" && /^error: failed to connect to the hypervisor$/m.test(err.stderr) && LIBVIRTD_NOT_RUNNING.test(err.stderr);
}

/** Our OVS bridges, or none when no ovsdb-server runs on this host. */
async function observeOvsIfRunning(ctx: ObserveContext, absent: NonNullable<PruneObservation["absent"]>): Promise<OvsState> {
  try {
    return await observeOvs(ctx);
  } catch (err) {
    if (!daemonNotRunning("ovsdb-server", err)) throw err;
    absent.push("ovsdb-server");
    return emptyOvsState();
  }
}

/** Every libvirt network with its state, or none when no libvirtd runs on this host. */
async function networksIfRunning(ctx: ObserveContext, absent: NonNullable<PruneObservation["absent"]>) {
  // No socket to reach libvirt through: virsh would only say so, after tens of ms of its own start.
  if (!(await libvirtSocketPresent(ctx))) {
    absent.push("libvirtd");
    return new Map();
  }
  try {
    return await observeNetworks(ctx);
  } catch (err) {
    if (!daemonNotRunning("libvirtd", err)) throw err;
    absent.push("libvirtd");
    return new Map();
  }
}

/**
 * Whether one of the sockets virsh would connect through exists (Toolbox.libvirtSockets);
 * true when the URI names none we know. A socket nobody listens on counts as present: virsh
 * then tells (daemonNotRunning).
 */
async function libvirtSocketPresent(ctx: ObserveContext): Promise<boolean> {
  const sockets = ctx.tools.libvirtSockets();
  if (sockets === undefined) return true;
  for (const path of sockets) if ((await ctx.listDir(dirname(path)))?.includes(basename(path))) return true;
  return false;
}

/**
 * Our dnsmasq configs in the run dir, of networks not kept: the process that
 * runs one, and its files (run dir: hosts, log and its rotated copies, a
 * lease file from before the move, pid, config; state dir: the lease file).
 */
async function staleDnsmasqs(spec: PruneSpec, ctx: ObserveContext): Promise<StaleDnsmasq[]> {
  const { dir, stateDir } = dnsmasqFiles(ctx.tools.runDir, "x", ctx.tools.stateDir);
  const names = (await ctx.listDir(dir)) ?? [];
  const stateNames = names.some((n) => n.endsWith(".conf")) ? ((await ctx.listDir(stateDir)) ?? []) : [];
  const keep = spec.keep.dnsmasq ?? [];
  const out: StaleDnsmasq[] = [];
  for (const entry of names) {
    const network = entry.endsWith(".conf") ? entry.slice(0, -".conf".length) : undefined;
    if (!network || !NETWORK_NAME.test(network) || keep.includes(network)) continue;
    const f = dnsmasqFiles(ctx.tools.runDir, network, ctx.tools.stateDir);
    // A config without our mark (for this site and this network) is not ours: nothing of it is touched.
    if (dnsmasqOwner(await ctx.readFile(f.conf)) !== `${ctx.owner} ${network}`) continue;
    const stale: StaleDnsmasq = { network, files: [] };
    const pid = Number((await ctx.readFile(f.pid))?.trim());
    if (Number.isInteger(pid) && pid > 0 && isOurDnsmasq(await ctx.processArgv(pid), f.conf)) stale.pid = pid;
    if (stateNames.includes(basename(f.leases))) stale.files.push(f.leases);
    const rotated = names.filter((n) => n.startsWith(`${basename(f.log)}.`) && /^\d+$/.test(n.slice(basename(f.log).length + 1))).map((n) => join(dir, n));
    for (const path of [f.hosts, f.legacyLeases, f.log, ...rotated.sort(), f.pid, f.conf]) {
      if (path.startsWith(`${dir}/`) && names.includes(path.slice(dir.length + 1))) stale.files.push(path);
    }
    out.push(stale);
  }
  return out;
}

/** The XML files we wrote into <runDir>/libvirt for networks not kept. */
async function staleLibvirtFiles(spec: PruneSpec, ctx: ObserveContext): Promise<string[]> {
  const dir = join(ctx.tools.runDir, "libvirt");
  const out: string[] = [];
  for (const entry of (await ctx.listDir(dir)) ?? []) {
    const network = entry.endsWith(".xml") ? entry.slice(0, -".xml".length) : undefined;
    if (!network || spec.keep.libvirtNetworks.includes(network)) continue;
    const path = networkXmlPath(ctx.tools.runDir, network);
    const xml = await ctx.readFile(path);
    let owner: string | undefined;
    try {
      owner = xml === undefined ? undefined : parseNetworkXml(xml).owner;
    } catch {
      continue; // not a network definition of ours
    }
    if (owner === ctx.owner) out.push(path);
  }
  return out;
}

/**
 * Removes what netfleet created on this host and no longer wants: owned
 * libvirt networks (and the XML files we defined them from), dnsmasqs and
 * their files, the table `inet netfleet`, owned OVS bridges, owned kernel
 * links. Anything without our owner mark is never touched, whatever its name.
 */
export const prune: ResourceHandler<PruneSpec, PruneObservation> = {
  kind: "prune",
  async observe(spec, ctx) {
    const absent: NonNullable<PruneObservation["absent"]> = [];
    const [links, ovs, networks, dnsmasq, nft, libvirtFiles] = await Promise.all([
      observeLinks(ctx),
      observeOvsIfRunning(ctx, absent),
      networksIfRunning(ctx, absent),
      staleDnsmasqs(spec, ctx),
      spec.keep.nftTable ? undefined : observeNftTable(ctx, { nftMayBeMissing: true }),
      staleLibvirtFiles(spec, ctx),
    ]);
    const libvirt: PruneObservation["libvirt"] = [];
    for (const [name, info] of networks) {
      if (spec.keep.libvirtNetworks.includes(name)) continue;
      const xml = await ctx.read(ctx.tools.virsh("net-dumpxml", "--inactive", name));
      if (parseNetworkXml(xml.stdout).owner !== ctx.owner) continue;
      libvirt.push({ name, active: info.active });
    }
    const observation: PruneObservation = { links, ovs, libvirt };
    if (dnsmasq.length > 0) observation.dnsmasq = dnsmasq;
    // Only a table carrying our structure mark is ours; one of that name without it is left alone.
    if (nft?.exists && nft.structure !== undefined) observation.nftTable = true;
    if (libvirtFiles.length > 0) observation.libvirtFiles = libvirtFiles;
    const sampling = absent.includes("ovsdb-server") ? [] : await staleSampling(spec, ctx);
    if (sampling.length > 0) observation.sampling = sampling;
    const mirrors = absent.includes("ovsdb-server") ? undefined : await observeStaleMirrors(spec, ctx, ovs);
    if (mirrors) observation.mirrors = mirrors;
    const vxlanFilters = await observeStaleVxlanFilters(spec, ctx);
    if (vxlanFilters.length > 0) observation.vxlanFilters = vxlanFilters;
    if (absent.length > 0) observation.absent = absent.sort();
    return observation;
  },
  absent: () => ({ links: new Map(), ovs: emptyOvsState(), libvirt: [] }),
  // Only what carries an owner mark can be pruned: a VM's tap coming or going, another link's state, or a
  // dnsmasq's new pid is no change to this plan.
  stable: (o) => ({
    links: [...o.links.values()].filter((l) => l.alias?.startsWith("netfleet-owner=")).map((l) => `${l.name} ${l.kind ?? ""} ${l.parent ?? ""} ${l.alias}`).sort(),
    ovsBridges: [...o.ovs.bridges.values()].filter((b) => b.externalIds[OWNER_KEY] !== undefined).map((b) => `${b.name} ${b.externalIds[OWNER_KEY]}`).sort(),
    libvirt: o.libvirt,
    dnsmasq: (o.dnsmasq ?? []).map(({ pid, ...d }) => ({ ...d, running: pid !== undefined })),
    nftTable: o.nftTable ?? false,
    libvirtFiles: o.libvirtFiles ?? [],
    absent: o.absent ?? [],
    sampling: o.sampling ?? [],
    vxlanFilters: o.vxlanFilters ?? [],
    ...(o.mirrors ? { mirrors: o.mirrors } : {}),
  }),
  plan(spec, observed, ctx) {
    const changes: Changes = {};
    const commands: Command[] = [];
    for (const net of observed.libvirt) {
      changes[`libvirt-network ${net.name}`] = { old: "present", new: null };
      if (net.active) commands.push(mutate(ctx.tools.virsh("net-destroy", net.name)));
      commands.push(mutate(ctx.tools.virsh("net-undefine", net.name)));
    }
    for (const path of observed.libvirtFiles ?? []) {
      changes[`file ${path}`] = { old: "present", new: null };
      commands.push(removeFileStep(path));
    }
    for (const d of observed.dnsmasq ?? []) {
      changes[`dnsmasq ${d.network}`] = { old: d.pid === undefined ? "stopped" : `pid ${d.pid}`, new: null };
      // Stop it first: a dnsmasq that is still running would write its lease and pid files again.
      if (d.pid !== undefined) commands.push(mutate(["kill", "-TERM", String(d.pid)]), waitExitStep(d.pid));
      // The marked config goes last: if anything fails before, the next pass still finds it ours.
      for (const path of d.files) commands.push(removeFileStep(path));
    }
    if (observed.nftTable && !spec.keep.nftTable) {
      changes["nft-table inet netfleet"] = { old: "present", new: null };
      commands.push(mutate(["nft", "delete", "table", "inet", "netfleet"]));
    }
    commands.push(...pruneSamplingCommands(observed.sampling, changes, ctx));
    commands.push(...pruneMirrorsCommands(observed.mirrors, changes, ctx));
    commands.push(...pruneVxlanFiltersCommands(observed.vxlanFilters, changes));
    const staleBridges = [...observed.ovs.bridges.values()]
      .filter((b) => b.externalIds[OWNER_KEY] === ctx.owner && !spec.keep.ovsBridges.includes(b.name))
      .map((b) => b.name)
      .sort();
    if (staleBridges.length > 0) {
      for (const b of staleBridges) changes[`ovs-bridge ${b}`] = { old: "present", new: null };
      commands.push(mutate(ctx.tools.ovsVsctl(...staleBridges.flatMap((b) => ["--", "del-br", b]))));
    }
    // VLANs before the bonds they sit on.
    const staleLinks = [...observed.links.values()]
      .filter((l) => isOurs(l, ctx.owner) && !spec.keep.links.includes(l.name))
      .sort((a, b) => Number(a.kind === "bond") - Number(b.kind === "bond") || a.name.localeCompare(b.name));
    const vlanParents = new Set(staleLinks.filter((l) => l.kind === "bond").map((l) => l.name));
    for (const l of staleLinks) {
      // Deleting a bond deletes its VLANs with it; do not delete them twice.
      if (l.kind === "vlan" && l.parent && vlanParents.has(l.parent)) {
        changes[`link ${l.name}`] = { old: "present", new: null };
        continue;
      }
      changes[`link ${l.name}`] = { old: "present", new: null };
      commands.push(mutate(ctx.tools.ip("link", "del", "dev", l.name)));
    }
    if (observed.absent?.length && commands.length === 0) {
      return { changes, commands, comment: `in desired state (no ${observed.absent.join(", no ")} running on this host: nothing of ours there)` };
    }
    return { changes, commands };
  },
};
