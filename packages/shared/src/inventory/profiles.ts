import { distance } from "fastest-levenshtein";
import { quoteToken } from "../errors.ts";
import type { NetworkSpec, VmSpec } from "./schema-network.ts";
import type { ProfileKey, ProfileSpec } from "./schema-profiles.ts";
import type { Located, Reporter, Ref } from "./report.ts";

/**
 * Network profiles (seed 004: "the network profile, used by one or more
 * VMs, unique id, stored in database"): a VM names one profile with
 * `profile:`, or its network names a default one; the VM takes every key of
 * the profile it does not set itself, key by key, as hosts take their
 * groups' settings. A VM may override only keys its profile has.
 *
 * The merge runs before the networks are resolved (networks.ts), on copies
 * of the network specs, so every check of VM keys (static ip for an allow
 * list, extra addresses inside the network, ...) sees the effective values.
 * Where each value came from is kept per VM (`VmPolicyOrigin`) and put on
 * the model by check-profiles.ts.
 */

/**
 * Where one effective policy value came from:
 * - `vm`: the VM's own key;
 * - `profile`: the profile the VM names (`profile` is its name);
 * - `network-profile`: the network's default profile (`profile`), the VM naming none;
 * - `network`: the network's own setting (isolated_ports, cluster_groups, gateway_services);
 * - `default`: nobody set it (none, unlimited).
 */
export type PolicySource =
  | { from: "vm" }
  | { from: "profile"; profile: string }
  | { from: "network-profile"; profile: string }
  | { from: "network" }
  | { from: "default" };

/**
 * The policy keys a source is kept for: the profile keys, bandwidth one
 * per direction (a VM overrides its profile's egress and ingress apart).
 */
export const POLICY_KEYS = ["isolated", "cluster_groups", "allow", "gateway_services", "extra_addresses", "bandwidth.egress", "bandwidth.ingress"] as const;
/** One of them. */
export type PolicyKey = (typeof POLICY_KEYS)[number];
/** A source per policy key (every key present once resolved). */
export type PolicySources = Record<PolicyKey, PolicySource>;

/** What the merge learnt about one VM of one network: its profile and the source of each key it or its profile set. */
export interface VmPolicyOrigin {
  profile?: string;
  /** Keys set by the VM or its profile; the rest are the network's or defaults (check-profiles.ts). */
  sources: Partial<PolicySources>;
}

/** The merge's result: the network specs with profile keys filled in, and per `network/vm` the origins. */
export interface ProfiledNetworks {
  networks: Located<NetworkSpec>[];
  origins: Map<string, VmPolicyOrigin>;
}

/** The key of `ProfiledNetworks.origins`: `network/vm`. */
export function vmKey(network: string, vm: string): string {
  return `${network}/${vm}`;
}

const WHOLE_KEYS = ["isolated", "cluster_groups", "allow", "gateway_services", "extra_addresses"] as const satisfies readonly ProfileKey[];
const DIRECTIONS = ["egress", "ingress"] as const;

/**
 * Fills each VM's spec with its profile's keys and records their sources.
 * Problems (to `r`): a profile name no `profiles:` entry defines (at the
 * VM's or the network's `profile`), a VM key its profile does not have (at
 * that key). Returns copies; `networks` is not changed. Pure apart from `r`.
 */
export function applyProfiles(r: Reporter, profiles: Located<ProfileSpec>[], networks: Located<NetworkSpec>[]): ProfiledNetworks {
  const byName = new Map(profiles.map((p) => [p.name, p]));
  const origins = new Map<string, VmPolicyOrigin>();
  const out = networks.map((network): Located<NetworkSpec> => {
    const { name: netName, value: net, ref } = network;
    let netProfile: Located<ProfileSpec> | undefined;
    if (net.profile !== undefined) {
      netProfile = byName.get(net.profile);
      if (!netProfile) r.report(r.at(ref, "profile"), unknownProfile(net.profile, profiles));
    }
    const clusterGroups: Record<string, string[]> = Object.fromEntries(Object.entries(net.cluster_groups).map(([g, m]) => [g, [...m]]));
    const vms: Record<string, VmSpec> = {};
    for (const [vmName, vm] of Object.entries(net.vms)) {
      const vmRef = r.at(ref, "vms", vmName);
      let profile = netProfile;
      let from: "profile" | "network-profile" = "network-profile";
      if (vm.profile !== undefined) {
        from = "profile";
        profile = byName.get(vm.profile);
        if (!profile) r.report(r.at(vmRef, "profile"), unknownProfile(vm.profile, profiles));
      }
      const named = vm.profile ?? net.profile;
      const merged = mergeVm(r, { vm, vmRef, profile, source: profile ? { from, profile: profile.name } : undefined, named });
      vms[vmName] = merged.spec;
      origins.set(vmKey(netName, vmName), { ...(profile ? { profile: profile.name } : {}), sources: merged.sources });
      for (const g of merged.spec.cluster_groups ?? []) {
        // own keys only: a group named like an Object.prototype member (`constructor`) is a group like any other
        const members = Object.hasOwn(clusterGroups, g) ? clusterGroups[g]! : (clusterGroups[g] = []);
        if (!members.includes(vmName)) members.push(vmName);
      }
    }
    return { ...network, value: { ...net, vms, cluster_groups: clusterGroups } };
  });
  return { networks: out, origins };
}

interface MergeInput {
  vm: VmSpec;
  vmRef: Ref;
  profile: Located<ProfileSpec> | undefined;
  source: PolicySource | undefined;
  /** The profile name the VM ended up with, even when no such profile exists (then no override is refused twice). */
  named: string | undefined;
}

/** One VM: its keys over its profile's, key by key; bandwidth direction by direction. */
function mergeVm(r: Reporter, { vm, vmRef, profile, source, named }: MergeInput): { spec: VmSpec; sources: Partial<PolicySources> } {
  const spec: VmSpec = { ...vm };
  const sources: Partial<PolicySources> = {};
  const p = profile?.value;
  const sets = (...path: string[]) => vmRef.file.doc.hasIn([...vmRef.path, ...path]);
  const refuse = (path: string[], what: string) => {
    if (!profile) return; // unknown profile: already reported
    r.report(r.at(vmRef, ...path), `VM overrides ${what}, which profile ${profile.name} (${r.where(profile.ref)}) does not have; add it to the profile, or name another profile`, { key: true });
  };
  for (const key of WHOLE_KEYS) {
    if (sets(key)) {
      if (named !== undefined && p?.[key] === undefined) refuse([key], key);
      sources[key] = { from: "vm" };
    } else if (p?.[key] !== undefined && source) {
      (spec as Record<string, unknown>)[key] = p[key];
      sources[key] = source;
    }
  }
  const bandwidth: NonNullable<VmSpec["bandwidth"]> = {};
  for (const dir of DIRECTIONS) {
    const own = vm.bandwidth?.[dir];
    const theirs = p?.bandwidth?.[dir];
    if (own) {
      if (named !== undefined && !theirs) refuse(["bandwidth", dir], `bandwidth.${dir}`);
      bandwidth[dir] = own;
      sources[`bandwidth.${dir}`] = { from: "vm" };
    } else if (theirs && source) {
      bandwidth[dir] = theirs;
      sources[`bandwidth.${dir}`] = source;
    }
  }
  if (bandwidth.egress || bandwidth.ingress) spec.bandwidth = bandwidth;
  else delete spec.bandwidth;
  return { spec, sources };
}

/** "no profile X", with the nearest defined name (Levenshtein distance at most 2) or the ones there are. */
function unknownProfile(name: string, profiles: Located<ProfileSpec>[]): string {
  const known = profiles.map((p) => p.name);
  const near = known.map((k) => ({ k, d: distance(name, k) })).filter((x) => x.d <= 2).sort((a, b) => a.d - b.d)[0];
  if (near) return `no profile ${quoteToken(name)} in this site (did you mean ${quoteToken(near.k)}?)`;
  return `no profile ${quoteToken(name)} in this site (${known.length > 0 ? `profiles: ${known.join(", ")}` : "it defines no profiles:"})`;
}

/**
 * A reporter for the checks that run on the merged VM specs (networks.ts,
 * check-gateway.ts): a problem at a VM key whose value came from a profile
 * is moved to that key of the profile, with the VM named ("for VM www1 of
 * network web: ..."), so `file:line:col` points where the value is written.
 * Everything else goes to `r` unchanged.
 */
export function profileReporter(r: Reporter, profiles: Located<ProfileSpec>[], { networks, origins }: ProfiledNetworks): Reporter {
  const profileRef = new Map(profiles.map((p) => [p.name, p.ref]));
  const networkRef = new Map(networks.map((n) => [n.name, n.ref]));
  return {
    at: (ref, ...more) => r.at(ref, ...more),
    where: (ref) => r.where(ref),
    report(ref, message, options) {
      const [section, netName, vms, vmName, key, ...rest] = ref.path;
      const netRef = typeof netName === "string" ? networkRef.get(netName) : undefined;
      if (section !== "networks" || vms !== "vms" || typeof vmName !== "string" || typeof key !== "string" || !netRef || netRef.file !== ref.file) return r.report(ref, message, options);
      const sources = origins.get(vmKey(netName as string, vmName))?.sources;
      const dir = key === "bandwidth" && (rest[0] === "egress" || rest[0] === "ingress") ? `bandwidth.${rest[0]}` : key;
      const source = sources?.[dir as PolicyKey];
      const pRef = source && "profile" in source ? profileRef.get(source.profile) : undefined;
      if (!pRef) return r.report(ref, message, options);
      r.report(r.at(pRef, key, ...rest), `for VM ${vmName} of network ${netName}: ${message}`, options);
    },
  };
}
