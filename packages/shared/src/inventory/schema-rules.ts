import { LINK_LOCAL_PATTERN } from "./schema-patterns.ts";

/**
 * Rules between keys of one inventory object, in JSON Schema (draft-07
 * `if`/`then`, `oneOf`, `not`), added to the zod schemas with `.meta()` for
 * `inventoryJsonSchema()` only: the loader checks the same rules in code
 * (site.ts, networks.ts, hosts.ts, check-*.ts). Each rule here refuses only what the loader
 * refuses, so an editor never flags a file `netfleet validate` accepts:
 *
 * - a rule on a host reads only keys the host itself sets, because a
 *   host's own keys win over its groups'; one that needs a key a group
 *   could give applies only to a host without groups;
 * - defaults are the loader's (name_set_timeout 3600, dns_max_ttl 300,
 *   dns = egress);
 * - groups get no such rules: a group's setting may be overridden by every
 *   host that takes it.
 */

/**
 * Conditions are written so that every key a `required` names is declared
 * beside it (ajv's strictRequired), and "absent" is `properties: { key:
 * false }` (true when the key is missing).
 */
/** The object has `key` set to `value`. */
const is = (key: string, value: unknown) => ({ properties: { [key]: { const: value } }, required: [key] });
/** The object sets every one of `keys`. */
const has = (...keys: string[]) => ({ properties: Object.fromEntries(keys.map((k) => [k, true])), required: keys });
/** The object does not set `key`. */
const lacks = (key: string) => ({ properties: { [key]: false } });
/** A host that lists no groups (or an empty list): everything it has, it sets itself. */
const noGroups = { properties: { groups: { type: "array", maxItems: 0 } } };

/** site: name_set_timeout >= 2 x dns_max_ttl where one of them is left at its default. */
export const siteRules = {
  allOf: [
    // name_set_timeout defaults to 3600 s.
    { if: lacks("name_set_timeout"), then: { properties: { dns_max_ttl: { type: "integer", maximum: 1800 } } } },
    // dns_max_ttl defaults to 300 s.
    { if: lacks("dns_max_ttl"), then: { properties: { name_set_timeout: { type: "integer", minimum: 600 } } } },
  ],
};

/** allow entry: exactly one of `to` and `name`; `to` not inside 169.254.0.0/16, which is always denied. */
export const allowEntryRules = {
  oneOf: [has("to"), has("name")],
  allOf: [{ properties: { to: { type: "string", not: { pattern: LINK_LOCAL_PATTERN } } } }],
};

/** VM: an allow list needs a static ip (the firewall matches allow lists by source address). */
export const vmRules = {
  allOf: [{ if: { properties: { allow: { type: "array", minItems: 1 } }, required: ["allow"] }, then: has("ip") }],
};

/** network: DNS policy against egress, allow lists only with egress: allowlist, static ips without DHCP. */
export const networkRules = {
  allOf: [
    // dns: open on an allowlist network needs the override (DNS itself would lead out).
    { if: { allOf: [is("egress", "allowlist"), is("dns", "open")] }, then: is("dns_open_with_allowlist", true) },
    // The override applies only to egress: allowlist with dns: open (dns defaults to egress).
    { if: is("dns_open_with_allowlist", true), then: { allOf: [is("egress", "allowlist"), is("dns", "open")] } },
    { if: is("egress", "open"), then: { properties: { vms: { type: "object", additionalProperties: { type: "object", properties: { allow: { type: "array", maxItems: 0 } } } } } } },
    {
      // dhcp absent or false
      if: { properties: { dhcp: { const: false } } },
      then: { properties: { vms: { type: "object", additionalProperties: { type: "object", ...has("ip") } } } },
    },
  ],
};

const lacpOn = { properties: { lacp: { enum: ["active", "passive"] } }, required: ["lacp"] };

/**
 * A host's own uplink block: bond modes per uplink mode, each member once,
 * `lacp` against the bond mode (check-uplink.ts), carries_management only
 * in kernel mode.
 */
export const hostUplinkRules = {
  allOf: [
    { properties: { members: { type: "array", uniqueItems: true } } },
    // LACP runs only on the negotiating modes, 802.3ad (kernel) and balance-tcp (ovs-trunk).
    { if: { allOf: [lacpOn, has("bond_mode")] }, then: { properties: { bond_mode: { enum: ["802.3ad", "balance-tcp"] } } } },
    // 802.3ad is LACP; lacp off would keep every member out of the aggregator.
    { not: { allOf: [is("lacp", "off"), is("bond_mode", "802.3ad")] } },
    // A balance-tcp bond (two or more members) without LACP passes no frame.
    { not: { allOf: [is("lacp", "off"), is("bond_mode", "balance-tcp"), { properties: { members: { type: "array", minItems: 2 } }, required: ["members"] }] } },
    // One ovs-trunk member is a plain port: no bond, no LACP.
    { not: { allOf: [lacpOn, is("mode", "ovs-trunk"), { properties: { members: { type: "array", maxItems: 1 } }, required: ["members"] }] } },
    { not: { allOf: [is("mode", "ovs-trunk"), is("carries_management", true)] } },
    // vxlan mode: no bond, the networks travel over the underlay (check-vxlan.ts).
    { if: is("mode", "vxlan"), then: { properties: { members: false, bond_mode: false, lacp: false, carries_management: false, trunk_bridge: false, bond: false, miimon: false } } },
    { if: { not: is("mode", "vxlan") }, then: { properties: { underlay: false, underlay_address: false } } },
    { if: is("mode", "kernel"), then: { properties: { bond_mode: { not: { enum: ["balance-slb", "balance-tcp"] } } } } },
    { if: is("mode", "ovs-trunk"), then: { properties: { bond_mode: { enum: ["active-backup", "balance-slb", "balance-tcp"] } } } },
  ],
};

/** host: role-specific keys, and what a host without groups must set itself. */
export const hostRules = {
  allOf: [
    { not: has("external_interface", "external_interfaces") },
    { if: is("role", "vmhost"), then: { properties: { external_interface: false, external_interfaces: false, reserved_ports: false } } },
    { if: noGroups, then: { allOf: [has("role", "uplink"), { properties: { uplink: { type: "object", allOf: [has("mode"), { if: { not: is("mode", "vxlan") }, then: has("members") }] } } }] } },
    { if: { allOf: [noGroups, is("role", "backend")] }, then: { anyOf: [has("external_interface"), has("external_interfaces")] } },
    // The management address the agent moves onto the bond is the host's own (groups have none).
    { if: { properties: { uplink: { type: "object", ...is("carries_management", true) } }, required: ["uplink"] }, then: has("address") },
    // lacp on with the default bond_mode (active-backup), which does not negotiate.
    { if: { allOf: [noGroups, { properties: { uplink: { type: "object", ...lacpOn } }, required: ["uplink"] }] }, then: { properties: { uplink: { type: "object", ...has("bond_mode") } } } },
    { if: { allOf: [noGroups, is("role", "vmhost")] }, then: { properties: { networks: { type: "array", minItems: 1 } }, required: ["networks"] } },
  ],
};

/**
 * A whole file: a file that holds the site and leaves allow_vlan_1 off
 * gives none of its networks VLAN 1 (a network in another file is beyond
 * a per-file schema).
 */
export const inventoryFileRules = {
  allOf: [
    {
      if: { properties: { site: { type: "object", properties: { allow_vlan_1: { const: false } } } }, required: ["site"] },
      then: { properties: { networks: { type: "object", additionalProperties: { type: "object", properties: { vlan: { type: "integer", minimum: 2 } } } } } },
    },
  ],
};
