import { quoteToken } from "../errors.ts";
import { cidrContains, ipv4ToInt, type Ipv4Cidr } from "../ipv4.ts";
import { UplinkSpec, type GroupSpec, type HostSpec, type NetworkSpec, type PortSet } from "./schema.ts";
import { resolvePortSets } from "./ports.ts";
import { checkExternalInterfaces, checkUplink } from "./check-hosts.ts";
import type { Host } from "./model.ts";
import type { Located, Reporter, Ref } from "./report.ts";

/**
 * Hosts as the compiler reads them: each host's groups merged under its own
 * settings, its role, uplink (defaults applied after the merge), networks
 * and backend-only settings checked, management addresses and MACs unique.
 * Returns the hosts that resolved (one missing its role or uplink is left
 * out, with a problem); problems go to `r` at the key that set the value.
 */
export function resolveHosts(
  r: Reporter,
  hosts: Located<HostSpec>[],
  groups: Located<GroupSpec>[],
  networks: Located<NetworkSpec>[],
  management: Ipv4Cidr | undefined,
): Located<Host>[] {
  const groupByName = new Map(groups.map((g) => [g.name, g]));
  const networkNames = networks.map((n) => n.name);
  const out: Located<Host>[] = [];
  const addresses = new Map<string, Ref>();
  const macs = new Map<string, Ref>();

  for (const group of groups) {
    group.value.networks?.forEach((n, i) => {
      if (!networkNames.includes(n)) r.report(r.at(group.ref, "networks", i), `no network ${quoteToken(n)} in this site`);
    });
  }

  for (const host of hosts) {
    const { name, value: spec, ref } = host;
    const { merged, uplink, labels, origin } = mergeSettings(r, host, groupByName);
    const role = merged.role as Host["role"] | undefined;
    if (!role) {
      r.report(ref, `host ${name} has no role (set role: vmhost or backend on the host or one of its groups)`, { key: true });
      continue;
    }
    const upl = UplinkSpec.safeParse(uplink);
    if (!upl.success) {
      for (const issue of upl.error.issues) {
        const field = String(issue.path[0] ?? "");
        const fieldRef = origin.get(`uplink.${field}`);
        if (fieldRef) r.report(fieldRef, issue.message.replace(/^Invalid input: /, ""));
        else r.report(ref, `uplink.${field} is required (set it on the host or one of its groups)`, { key: true });
      }
      // members defaults to none for vxlan mode; any other (or no) mode needs them (check-vxlan.ts for resolved hosts).
      if (uplink.members === undefined && uplink.mode !== "vxlan") r.report(ref, `uplink.members is required (set it on the host or one of its groups)`, { key: true });
      continue;
    }
    const up = upl.data;
    const networksRef = origin.get("networks");
    let hostNetworks = merged.networks as string[] | undefined;
    if (hostNetworks && networksRef) {
      hostNetworks.forEach((n, i) => {
        if (!networkNames.includes(n)) r.report(r.at(networksRef, i), `no network ${quoteToken(n)} in this site`);
      });
      const dup = hostNetworks.findIndex((n, i) => hostNetworks!.indexOf(n) !== i);
      if (dup >= 0) r.report(r.at(networksRef, dup), `network ${hostNetworks[dup]} is listed twice`);
    }
    if (role === "backend") {
      if (hostNetworks && networksRef) {
        const missing = networkNames.filter((n) => !hostNetworks!.includes(n));
        if (missing.length > 0) r.report(networksRef, `a backend is the gateway of every network; missing ${missing.join(", ")}`);
      }
      hostNetworks = networkNames;
      checkExternalInterfaces(r, { name, ref, merged, origin, up });
    } else {
      if (!hostNetworks || hostNetworks.length === 0) {
        r.report(networksRef ?? ref, `vmhost ${name} carries no networks (set networks: on the host or one of its groups)`, { key: !networksRef });
        hostNetworks = [];
      }
      for (const key of ["external_interface", "external_interfaces", "reserved_ports"]) {
        if (merged[key] !== undefined) r.report(origin.get(key)!, `${key} applies only to a backend`);
      }
    }

    checkUplink(r, up, origin, hostNetworks.map((n) => networks.find((x) => x.name === n)?.value.vlan));

    const address = merged.address as string | undefined;
    if (address !== undefined) {
      const at = origin.get("address")!;
      if (management && !cidrContains(management, ipv4ToInt(address))) {
        r.report(at, `management address ${address} is outside the management network ${management.text}`);
      }
      const first = addresses.get(address);
      if (first) r.report(at, `address ${address} is already used by host ${String(first.path[1])} at ${r.where(first)}`);
      else addresses.set(address, at);
    }
    const mac = (merged.mac as string | undefined)?.toLowerCase();
    if (mac !== undefined) {
      const first = macs.get(mac);
      if (first) r.report(origin.get("mac")!, `MAC ${mac} is already used by host ${String(first.path[1])}`);
      else macs.set(mac, origin.get("mac")!);
    }

    out.push({
      name,
      ref,
      value: {
        name,
        role,
        address,
        mac,
        groups: spec.groups ?? [],
        labels: Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1))),
        networks: [...hostNetworks].sort(),
        uplink: up,
        external_interface: (merged.external_interface as string | undefined) ?? (merged.external_interfaces as string[] | undefined)?.[0],
        external_interfaces: role === "backend" ? ((merged.external_interfaces as string[] | undefined) ?? (merged.external_interface !== undefined ? [merged.external_interface as string] : [])) : [],
        reserved_ports: role === "backend" ? resolvePortSets((merged.reserved_ports as PortSet[] | undefined) ?? [{ proto: "tcp", ports: [22] }]) : [],
      },
      origin,
    });
  }

  return out;
}

/** A host's settings with its groups' under them, and where each one was written. */
interface MergedSettings {
  merged: Record<string, unknown>;
  uplink: Record<string, unknown>;
  labels: Record<string, string>;
  /** `uplink.<key>`, `uplink` and each top-level key -> the place that set it. */
  origin: Map<string, Ref>;
}

/**
 * Later sources win: groups in the order listed, then the host itself; the
 * uplink and labels merge key by key. Each setting remembers where it came
 * from, so errors point at it. An unknown group is a problem at its entry.
 */
function mergeSettings(r: Reporter, { value: spec, ref }: Located<HostSpec>, groupByName: Map<string, Located<GroupSpec>>): MergedSettings {
  const origin = new Map<string, Ref>();
  const merged: Record<string, unknown> = {};
  const uplink: Record<string, unknown> = {};
  const labels: Record<string, string> = {};
  const sources: { settings: GroupSpec; ref: Ref }[] = [];
  (spec.groups ?? []).forEach((g, i) => {
    const group = groupByName.get(g);
    if (!group) r.report(r.at(ref, "groups", i), `no group ${quoteToken(g)} in this site`);
    else sources.push({ settings: group.value, ref: group.ref });
  });
  sources.push({ settings: spec, ref });
  for (const { settings, ref: src } of sources) {
    for (const [key, value] of Object.entries(settings)) {
      if (value === undefined || key === "groups") continue;
      if (key === "uplink") {
        for (const [k, v] of Object.entries(value as object)) {
          uplink[k] = v;
          origin.set(`uplink.${k}`, r.at(src, "uplink", k));
        }
        origin.set("uplink", r.at(src, "uplink"));
      } else if (key === "labels") {
        Object.assign(labels, value);
      } else {
        merged[key] = value;
        origin.set(key, r.at(src, key));
      }
    }
  }
  return { merged, uplink, labels, origin };
}
