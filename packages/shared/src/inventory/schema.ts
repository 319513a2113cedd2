import { z } from "zod";
import { DNS_LABEL, NETWORK_NAME } from "../names.ts";
import { json } from "./schema-fields.ts";
import { SiteSettings } from "./schema-site.ts";
import { NetworkSpec } from "./schema-network.ts";
import { GroupSpec, HostSpec } from "./schema-host.ts";
import { inventoryFileRules } from "./schema-rules.ts";
import { MirrorSpec } from "./schema-mirrors.ts";
import { ProfileSpec } from "./schema-profiles.ts";

export { NatsUrl, PortSet } from "./schema-fields.ts";
export { SiteSettings } from "./schema-site.ts";
export { AllowEntry, NetworkSpec, PortForward, PortRangeForward, VmSpec } from "./schema-network.ts";
export { GroupSpec, HostSpec, UplinkSpec, uplinkLacp } from "./schema-host.ts";
export { ErspanDestination, GreDestination, MirrorDestination, MirrorSpec } from "./schema-mirrors.ts";
export { ProfileSpec, PROFILE_KEYS, type ProfileKey } from "./schema-profiles.ts";
export { BandwidthSpec, BandwidthLimitSpec } from "./schema-bandwidth.ts";

/**
 * The inventory file format: one file's sections (site, networks, groups,
 * hosts; schema-site.ts, schema-network.ts, schema-host.ts, their value
 * types in schema-fields.ts). Every object is strict: an unknown key (a typo)
 * is an error, never silently ignored. Types are derived from these schemas,
 * and `inventoryJsonSchema()` emits a JSON Schema for editors.
 *
 * Two layers: the zod validators (what `netfleet validate` runs, with its
 * messages), and `.meta({...})` on them, which adds JSON-Schema-only keywords
 * (patterns for rules checked in code, `propertyNames`, `if`/`then` between
 * keys of one object, `patternErrorMessage` for editors) and changes nothing
 * zod checks: `.meta()` returns a copy with the same checks.
 */
export const InventoryFile = json(
  z.strictObject({
    site: SiteSettings.describe("Site-wide settings; exactly one file of the folder holds them").optional(),
    networks: z
      .record(json(z.string(), { pattern: NETWORK_NAME.source, patternErrorMessage: "network names are 1-12 of a-z 0-9 -, starting with a letter", description: "Network name: 1-12 of a-z 0-9 -, starting with a letter (it becomes br-<name>, pu-<name>, pb-<name>, gw-<name>)" }), NetworkSpec.describe("One VM network: VLAN, addresses, DHCP, egress policy, VMs"))
      .optional()
      .describe("VM networks by name (a name defined once across the folder's files)"),
    groups: z
      .record(json(z.string(), { pattern: DNS_LABEL.source, patternErrorMessage: "group names are lowercase DNS labels (a-z, 0-9, -; at most 63)", description: "Group name: a lowercase DNS label" }), GroupSpec.describe("Settings the group's hosts take unless they set their own"))
      .optional()
      .describe("Host groups by name: shared settings for the hosts that list them"),
    hosts: z
      .record(json(z.string(), { pattern: DNS_LABEL.source, patternErrorMessage: "host names are lowercase DNS labels (a-z, 0-9, -; at most 63)", description: "Host name: a lowercase DNS label" }), HostSpec.describe("One host: its role, uplink, networks, management address"))
      .optional()
      .describe("Hosts by name: the site's vmhosts and its one backend"),
    profiles: z
      .record(json(z.string(), { pattern: DNS_LABEL.source, patternErrorMessage: "profile names are lowercase DNS labels (a-z, 0-9, -; at most 63)", description: "Profile name: a lowercase DNS label" }), ProfileSpec.describe("One network profile: policy keys a VM (or a network, as default) takes by naming it"))
      .optional()
      .describe("Network profiles by name: reusable per-VM policies (isolation, cluster groups, allow list, gateway services, extra addresses, bandwidth). A VM names one with `profile:` (or its network does, as default); the VM's own keys override the profile's key by key"),
    mirrors: z
      .record(json(z.string(), { pattern: NETWORK_NAME.source, patternErrorMessage: "mirror names are 1-12 of a-z 0-9 -, starting with a letter", description: "Mirror name: 1-12 of a-z 0-9 -, starting with a letter (the OVS Mirror's name; a tunnel port becomes mr-<name>)" }), MirrorSpec.describe("One port mirror (OVS Mirror table): a network's VM ports or the whole network, copied to a capture VM or a GRE/ERSPAN target"))
      .optional()
      .describe("Port mirrors by name (a name defined once across the folder's files)"),
  }),
  inventoryFileRules,
);

/** One file as validated (defaults applied). */
export type InventoryFile = z.output<typeof InventoryFile>;

/**
 * The JSON Schema (draft-07, what yaml-language-server implements) of one
 * inventory file, for editors: every per-file rule a JSON Schema can state
 * (types, ranges, enums, patterns for addresses, CIDRs with host bits,
 * names and ports, strict keys, rules between keys of one object), each
 * field described. Rules across entries or files (overlaps, references,
 * duplicates across networks) stay with `netfleet validate`; the list is in
 * test/unit/json-schema-limits.ts. Pure; throws nothing.
 */
export function inventoryJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(InventoryFile, { io: "input", unrepresentable: "any", target: "draft-07" }) as Record<string, unknown>;
  return {
    ...schema,
    $id: "https://netfleet.dev/schema/inventory.json",
    title: "netfleet inventory file",
    description: "One YAML file of a netfleet site folder (inventories/<site>/*.yaml): any of the sections site, networks, groups, hosts. `netfleet validate <folder>` checks the folder as a whole",
  };
}
