import type { OwnedCleanupSpec } from "@netfleet/shared";
import { ExecError, mutate, type Command } from "../exec/runner.ts";
import { isOurs, observeLinks, type Link } from "./ip-link.ts";
import { observeNetworkNames, parseNetInfo, parseNetworkXml } from "./libvirt.ts";
import { observeOvs, OWNER_KEY, type OvsState } from "./ovs.ts";
import type { Changes, ObserveContext, ResourceHandler } from "./types.ts";

export interface CleanupObservation {
  links: Map<string, Link>;
  ovs: OvsState;
  /** Networks carrying our owner mark, with whether they run. */
  libvirt: { name: string; active: boolean }[];
  /** Daemons that do not run on this host (so hold nothing of ours), e.g. a kernel-mode backend's. */
  absent?: ("ovsdb-server" | "libvirtd")[];
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
async function observeOvsIfRunning(ctx: ObserveContext, absent: NonNullable<CleanupObservation["absent"]>): Promise<OvsState> {
  try {
    return await observeOvs(ctx);
  } catch (err) {
    if (!daemonNotRunning("ovsdb-server", err)) throw err;
    absent.push("ovsdb-server");
    return { bridges: new Map(), ports: new Map(), interfaces: new Map() };
  }
}

/** Every libvirt network name, or none when no libvirtd runs on this host. */
async function networkNamesIfRunning(ctx: ObserveContext, absent: NonNullable<CleanupObservation["absent"]>): Promise<string[]> {
  try {
    return await observeNetworkNames(ctx);
  } catch (err) {
    if (!daemonNotRunning("libvirtd", err)) throw err;
    absent.push("libvirtd");
    return [];
  }
}

/**
 * Removes what netfleet created on this host and no longer wants: owned
 * libvirt networks, owned OVS bridges, owned kernel links. Anything without
 * our owner mark is never touched, whatever its name.
 */
export const ownedCleanup: ResourceHandler<OwnedCleanupSpec, CleanupObservation> = {
  kind: "owned-cleanup",
  async observe(spec, ctx) {
    const absent: NonNullable<CleanupObservation["absent"]> = [];
    const [links, ovs, names] = await Promise.all([observeLinks(ctx), observeOvsIfRunning(ctx, absent), networkNamesIfRunning(ctx, absent)]);
    const libvirt: CleanupObservation["libvirt"] = [];
    for (const name of names) {
      if (spec.keep.libvirtNetworks.includes(name)) continue;
      const xml = await ctx.read(ctx.tools.virsh("net-dumpxml", "--inactive", name));
      if (parseNetworkXml(xml.stdout).owner !== ctx.owner) continue;
      const info = parseNetInfo((await ctx.read(ctx.tools.virsh("net-info", name))).stdout);
      libvirt.push({ name, active: info.active });
    }
    const observation: CleanupObservation = { links, ovs, libvirt };
    if (absent.length > 0) observation.absent = absent.sort();
    return observation;
  },
  plan(spec, observed, ctx) {
    const changes: Changes = {};
    const commands: Command[] = [];
    for (const net of observed.libvirt) {
      changes[`libvirt-network ${net.name}`] = { old: "present", new: null };
      if (net.active) commands.push(mutate(ctx.tools.virsh("net-destroy", net.name)));
      commands.push(mutate(ctx.tools.virsh("net-undefine", net.name)));
    }
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
