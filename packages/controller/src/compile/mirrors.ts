import { bridgeName, type Host, type Inventory, type Mirror, type MirrorTunnel, type OvsMirrorSpec, type ResourceSpec } from "@netfleet/shared";

/** The tunnel port a GRE/ERSPAN mirror outputs to: mr-<mirror> (mirror names are at most 12 characters). */
export function mirrorTunnelPort(mirror: string): string {
  return `mr-${mirror}`;
}

/**
 * The site's `mirrors:` as resources of a vmhost: one `ovs-mirror` per
 * mirror whose network the host carries, just before the prune, and the
 * prune's `keep.ovsMirrors` naming them (set on every vmhost, [] when it has
 * none, so a mirror taken out of the inventory is removed). A capture-VM
 * mirror goes to every host of its network: the agent installs it where the
 * capture VM's port is, keyed by its MAC, so it follows the VM. The backend
 * carries no VM port and gets none. Pure; returns `resources` unchanged on
 * a backend.
 */
export function withMirrors(inventory: Inventory, host: Host, resources: ResourceSpec[]): ResourceSpec[] {
  if (host.role !== "vmhost") return resources;
  const specs = (inventory.mirrors ?? []).filter((m) => host.networks.includes(m.network)).map((m) => mirrorSpec(inventory, m));
  const out: ResourceSpec[] = [];
  for (const r of resources) {
    if (r.kind === "prune") {
      out.push(...specs, { ...r, keep: { ...r.keep, ovsMirrors: specs.map((s) => s.name) } });
      continue;
    }
    out.push(r);
  }
  return out;
}

/** One mirror as the agent's spec: source MACs from the network's VMs, the output by MAC or as a tunnel. */
function mirrorSpec(inventory: Inventory, m: Mirror): OvsMirrorSpec {
  const network = inventory.networks.find((n) => n.name === m.network)!;
  const macOf = (vm: string) => network.vms.find((v) => v.name === vm)!.mac;
  const d = m.destination;
  const output: OvsMirrorSpec["output"] = "vm" in d ? { vmMac: macOf(d.vm) } : { tunnel: tunnelOf(m.name, d) };
  return {
    kind: "ovs-mirror",
    name: m.name,
    bridge: bridgeName(m.network),
    ...(m.vms ? { sourceMacs: m.vms.map(macOf).sort() } : {}),
    direction: m.direction,
    output,
  };
}

function tunnelOf(name: string, d: Exclude<Mirror["destination"], { vm: string }>): MirrorTunnel {
  const port = mirrorTunnelPort(name);
  if ("gre" in d) return { port, type: "gre", remoteIp: d.gre.remote_ip, ...(d.gre.key !== undefined ? { key: d.gre.key } : {}) };
  const e = d.erspan;
  return {
    port,
    type: "erspan",
    remoteIp: e.remote_ip,
    key: e.key,
    erspanVersion: e.erspan_ver,
    ...(e.erspan_idx !== undefined ? { erspanIndex: e.erspan_idx } : {}),
    ...(e.erspan_dir !== undefined ? { erspanDir: e.erspan_dir } : {}),
    ...(e.erspan_hwid !== undefined ? { erspanHwid: e.erspan_hwid } : {}),
  };
}

/**
 * One line for `netfleet plan`: `OVS Mirror on br-lan: VMs 52:54:00:95:0a:01 (both ways) -> capture VM
 * 52:54:00:95:0a:02's port`, or `every port (select_all) -> gre port mr-x to 198.51.100.7 key 42`.
 */
export function mirrorSummary(spec: OvsMirrorSpec): string {
  const from = spec.sourceMacs ? `VMs ${spec.sourceMacs.join(",")} (${spec.direction === "both" ? "both ways" : spec.direction === "egress" ? "what they send" : "what they receive"})` : "every port (select_all)";
  const o = spec.output;
  const to =
    "vmMac" in o
      ? `capture VM ${o.vmMac}'s port (it receives only mirrored frames)`
      : `${o.tunnel.type} port ${o.tunnel.port} to ${o.tunnel.remoteIp}${o.tunnel.key !== undefined ? ` key ${o.tunnel.key}` : ""}${o.tunnel.erspanVersion !== undefined ? ` erspan_ver ${o.tunnel.erspanVersion}` : ""}`;
  return `OVS Mirror on ${spec.bridge}: ${from} -> ${to}; installed where that port is`;
}
