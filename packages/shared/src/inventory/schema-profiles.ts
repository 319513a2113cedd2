import { z } from "zod";
import { BandwidthSpec, bandwidthKeysFor } from "./schema-bandwidth.ts";
import { dnsLabel, ipv4, json, PortSet } from "./schema-fields.ts";
import { AllowEntry } from "./schema-network.ts";

/**
 * The `profiles` section and the keys a VM or a network uses to name one:
 * a network profile (seed 004: an id kept in one place, used by many VMs)
 * holds isolation, cluster groups, an allow list, gateway services, extra
 * addresses and bandwidth. A VM's own keys override its profile's key by
 * key (profiles.ts merges them and keeps where each value came from).
 */

/** The name of a profile: a lowercase DNS label. */
export const profileName = dnsLabel;

/**
 * One `profiles` entry: every key optional; a VM that names the profile
 * takes each key it does not set itself. A key the profile leaves out is
 * one a VM naming it may not set (that is an override of nothing: say it
 * in the profile, or name another profile).
 */
export const ProfileSpec = z.strictObject({
  description: z.string().max(200).optional().describe("What the profile is for (shown by netfleet plan); at most 200 characters"),
  isolated: z.boolean().optional().describe("VMs talk only to the gateway and their cluster groups, not to each other (overrides the network's isolated_ports)"),
  cluster_groups: json(z.array(dnsLabel.describe("A cluster group of the VM's network")).min(1), { uniqueItems: true })
    .optional()
    .describe("Cluster groups of the VM's network the VM joins (reached across hosts even when isolated); a group named here and nowhere else is made in each network with two or more of its VMs"),
  allow: z.array(AllowEntry.describe("One allowed destination")).optional().describe("Egress allow list (networks with egress: allowlist; the VM needs a static ip)"),
  gateway_services: z
    .array(PortSet.describe("A protocol and its ports on the gateway address"))
    .optional()
    .describe("Services on the gateway address the VM may reach, beyond its network's gateway_services (the VM needs a static ip)"),
  extra_addresses: z.array(ipv4.describe("An IPv4 address inside the VM's network")).optional().describe("Further addresses the VM may send from (a virtual IP shared by the VMs of the profile)"),
  bandwidth: BandwidthSpec.optional(),
});

/** The keys of a profile a VM may override, in the order `netfleet plan` shows them. */
export const PROFILE_KEYS = ["isolated", "cluster_groups", "allow", "gateway_services", "extra_addresses", "bandwidth"] as const;
/** One of them. */
export type ProfileKey = (typeof PROFILE_KEYS)[number];

export type ProfileSpec = z.output<typeof ProfileSpec>;

/** Keys a did-you-mean may offer at `path` inside the `profiles` section (problems.ts). */
export function profileKeysFor(path: readonly (string | number)[]): string[] {
  if (path.length === 2) return Object.keys(ProfileSpec.shape);
  if (path[2] === "bandwidth") return bandwidthKeysFor(path.slice(3));
  if (path[2] === "allow" && path.length === 4) return ["to", "name", "ports", "proto"];
  if (path[2] === "gateway_services" && path.length === 4) return Object.keys(PortSet.shape);
  return [];
}
