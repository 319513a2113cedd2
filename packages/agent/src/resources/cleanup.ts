import type { OwnedCleanupSpec } from "@netfleet/shared";
import { mutate, type Command } from "../exec/runner.ts";
import { isOurs, observeLinks, type Link } from "./ip-link.ts";
import { observeNetworkNames, parseNetInfo, parseNetworkXml } from "./libvirt.ts";
import { observeOvs, OWNER_KEY, type OvsState } from "./ovs.ts";
import type { Changes, ResourceHandler } from "./types.ts";

export interface CleanupObservation {
  links: Map<string, Link>;
  ovs: OvsState;
  /** Networks carrying our owner mark, with whether they run. */
  libvirt: { name: string; active: boolean }[];
}

/**
 * Removes what netfleet created on this host and no longer wants: owned
 * libvirt networks, owned OVS bridges, owned kernel links. Anything without
 * our owner mark is never touched, whatever its name.
 */
export const ownedCleanup: ResourceHandler<OwnedCleanupSpec, CleanupObservation> = {
  kind: "owned-cleanup",
  async observe(spec, ctx) {
    const [links, ovs, names] = await Promise.all([observeLinks(ctx), observeOvs(ctx), observeNetworkNames(ctx)]);
    const libvirt: CleanupObservation["libvirt"] = [];
    for (const name of names) {
      if (spec.keep.libvirtNetworks.includes(name)) continue;
      const xml = await ctx.read(ctx.tools.virsh("net-dumpxml", "--inactive", name));
      if (parseNetworkXml(xml.stdout).owner !== ctx.owner) continue;
      const info = parseNetInfo((await ctx.read(ctx.tools.virsh("net-info", name))).stdout);
      libvirt.push({ name, active: info.active });
    }
    return { links, ovs, libvirt };
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
    return { changes, commands };
  },
};
