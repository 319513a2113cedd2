import { quoteToken } from "../errors.ts";
import { NETWORK_NAME } from "../names.ts";
import { cidrContains, ipv4ToInt, parseIpv4Cidr, type Ipv4Cidr } from "../ipv4.ts";
import type { SourceFile } from "./source.ts";
import type { NetworkSpec } from "./schema-network.ts";
import type { MirrorSpec } from "./schema-mirrors.ts";
import type { Network } from "./model.ts";
import type { Mirror } from "./model-mirror.ts";
import type { Located, Reporter, Ref } from "./report.ts";

/** One parsed file's `mirrors` section (site.ts hands every file's in). */
export interface MirrorsOfFile {
  file: SourceFile;
  mirrors?: Record<string, MirrorSpec>;
}

/**
 * The site's mirrors, checked against its networks and VMs, sorted by name.
 * A mirror's name is defined once across the folder's files and is 1-12 of
 * a-z 0-9 - starting with a letter (it becomes the tunnel port mr-<name>,
 * 15 characters at most). Its network exists; its source VMs are VMs of that
 * network; its destination VM is one too (an OVS Mirror's output_port is a
 * port of the bridge whose ports it selects, ovs-vswitchd.conf.db(5)), not
 * one of its sources, and, where both say where they run, on the host of
 * every source (a VM port sees only what its own host's bridge carries); a
 * whole-network mirror copies both directions (select_all has none); a
 * tunnel's remote_ip lies in no VM network. Problems go to `r`.
 */
export function resolveMirrors(r: Reporter, files: MirrorsOfFile[], networks: Located<NetworkSpec>[], resolved: Network[]): Mirror[] {
  const out: Mirror[] = [];
  for (const { name, value: m, ref } of collectMirrors(r, files)) {
    const network = networks.find((n) => n.name === m.network);
    if (!network) {
      r.report(r.at(ref, "network"), `no network ${quoteToken(m.network)} in the site`);
      continue;
    }
    const ok = [
      checkSources(r, ref, m, network, networks),
      checkDestination(r, ref, m, network, networks, resolved),
    ].every(Boolean);
    if (m.vms === undefined && m.direction !== "both") {
      r.report(r.at(ref, "direction"), `a whole-network mirror copies both directions (OVS select_all has no direction); list the source vms to mirror only ${m.direction}`);
      continue;
    }
    if (!ok) continue;
    const destination: Mirror["destination"] = m.destination.vm !== undefined ? { vm: m.destination.vm } : m.destination.gre ? { gre: m.destination.gre } : { erspan: m.destination.erspan! };
    out.push({ name, network: m.network, ...(m.vms ? { vms: [...m.vms].sort() } : {}), direction: m.direction, destination });
  }
  return out;
}

/** Entries of `mirrors` across all files, sorted by name; a bad name or a name defined twice is a problem. */
function collectMirrors(r: Reporter, files: MirrorsOfFile[]): Located<MirrorSpec>[] {
  const seen = new Map<string, Located<MirrorSpec>>();
  for (const { file, mirrors } of files) {
    for (const [name, value] of Object.entries(mirrors ?? {})) {
      const ref: Ref = { file, path: ["mirrors", name] };
      if (!NETWORK_NAME.test(name)) {
        r.report(ref, `invalid name ${quoteToken(name)}: 1-12 of a-z 0-9 -, starting with a letter (it becomes the tunnel port mr-<name>)`, { key: true });
        continue;
      }
      const first = seen.get(name);
      if (first) {
        r.report(ref, `mirror ${quoteToken(name)} is already defined at ${r.where(first.ref)}`, { key: true });
        continue;
      }
      seen.set(name, { name, value, ref });
    }
  }
  return [...seen.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** The networks (other than `network`) that have a VM of this name. */
function otherNetworksOf(vm: string, network: Located<NetworkSpec>, networks: Located<NetworkSpec>[]): string[] {
  return networks.filter((n) => n.name !== network.name && Object.hasOwn(n.value.vms, vm)).map((n) => n.name);
}

function checkSources(r: Reporter, ref: Ref, m: MirrorSpec, network: Located<NetworkSpec>, networks: Located<NetworkSpec>[]): boolean {
  let ok = true;
  const seen = new Set<string>();
  (m.vms ?? []).forEach((vm, i) => {
    const at = r.at(ref, "vms", i);
    if (seen.has(vm)) {
      r.report(at, `VM ${vm} is listed twice`);
      ok = false;
    }
    seen.add(vm);
    if (Object.hasOwn(network.value.vms, vm)) return;
    const elsewhere = otherNetworksOf(vm, network, networks);
    r.report(at, elsewhere.length > 0 ? `VM ${vm} is on network ${elsewhere.join(", ")}, not on ${network.name} (the mirror's network): an OVS mirror selects the ports of one bridge` : `no VM ${quoteToken(vm)} in network ${network.name}`);
    ok = false;
  });
  return ok;
}

function checkDestination(r: Reporter, ref: Ref, m: MirrorSpec, network: Located<NetworkSpec>, networks: Located<NetworkSpec>[], resolved: Network[]): boolean {
  const dest = m.destination;
  if (dest.vm !== undefined) {
    const at = r.at(ref, "destination", "vm");
    const capture = Object.hasOwn(network.value.vms, dest.vm) ? network.value.vms[dest.vm] : undefined;
    if (capture === undefined) {
      const elsewhere = otherNetworksOf(dest.vm, network, networks);
      r.report(at, elsewhere.length > 0 ? `destination VM ${dest.vm} is on network ${elsewhere.join(", ")}, not on ${network.name} (the mirror's network): an OVS mirror's output port must be on the bridge of its sources (br-${network.name}); use a gre or erspan destination to reach another network` : `no VM ${quoteToken(dest.vm)} in network ${network.name}`);
      return false;
    }
    if (m.vms?.includes(dest.vm)) {
      r.report(at, `destination VM ${dest.vm} is also a source of this mirror: its port would receive only mirrored frames, its own traffic dropped`);
      return false;
    }
    let ok = true;
    (m.vms ?? []).forEach((vm, i) => {
      const host = Object.hasOwn(network.value.vms, vm) ? network.value.vms[vm]?.host : undefined;
      if (capture.host !== undefined && host !== undefined && host !== capture.host) {
        r.report(r.at(ref, "vms", i), `VM ${vm} runs on ${host}, the destination VM ${dest.vm} on ${capture.host}: a capture VM's port sees only the ports of its own host's bridge; use a gre or erspan destination for sources on other hosts`);
        ok = false;
      }
    });
    return ok;
  }
  const kind = dest.gre ? "gre" : "erspan";
  const remote = (dest.gre ?? dest.erspan)!.remote_ip;
  const inside = resolved.find((n) => cidrContains(parseIpv4Cidr(n.cidr) as Ipv4Cidr, ipv4ToInt(remote)));
  if (inside) {
    r.report(r.at(ref, "destination", kind, "remote_ip"), `remote_ip ${remote} is inside network ${inside.name} (${inside.cidr}): the tunnel leaves through the host's own routing, not through a VM network`);
    return false;
  }
  const e = dest.erspan;
  if (e && e.erspan_ver === 1 && (e.erspan_dir !== undefined || e.erspan_hwid !== undefined)) {
    r.report(r.at(ref, "destination", "erspan", e.erspan_dir !== undefined ? "erspan_dir" : "erspan_hwid"), "erspan_dir and erspan_hwid belong to ERSPAN version 2 (erspan_ver: 2)", { key: true });
    return false;
  }
  if (e && e.erspan_ver === 2 && e.erspan_idx !== undefined) {
    r.report(r.at(ref, "destination", "erspan", "erspan_idx"), "erspan_idx belongs to ERSPAN version 1 (erspan_ver: 1)", { key: true });
    return false;
  }
  return true;
}
