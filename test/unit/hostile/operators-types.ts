/**
 * Type operators, anywhere in the baseline: a value of the wrong type at any
 * leaf or collection, an unknown key in any settings mapping (a typo of a
 * sibling or an arbitrary string), a required key removed.
 */
import fc from "fast-check";
import { op, q, type Operator } from "./operator.ts";
import { Site } from "./site.ts";
import { GroupSpec, HostSpec, InventoryFile, NetworkSpec, PortForward, PortRangeForward, PortSet, SiteSettings, UplinkSpec, VmSpec } from "@netfleet/shared";

/** Every key the inventory schema knows somewhere: an "unknown" key drawn from these is renamed. */
const SCHEMA_KEYS = new Set<string>([
  ...[SiteSettings, NetworkSpec, VmSpec, UplinkSpec, HostSpec, GroupSpec, InventoryFile, PortForward, PortRangeForward, PortSet].flatMap((s) => Object.keys(s.shape)),
  ...["to", "name", "ports", "proto", "start", "end", "lease_time"],
]);

type Path = (string | number)[];
interface Place {
  file: string;
  path: Path;
  kind: "number" | "string" | "boolean" | "array" | "object";
}

/** Mappings whose keys are names (a new key is a new network, VM, host...), not settings. */
const NAME_MAPS = new Set(["networks", "vms", "hosts", "groups", "cluster_groups", "labels"]);

function kindOf(v: unknown): Place["kind"] {
  if (Array.isArray(v)) return "array";
  if (v !== null && typeof v === "object") return "object";
  return typeof v as Place["kind"];
}

/** Every value of the baseline's documents, with its file and path. */
function places(): Place[] {
  const out: Place[] = [];
  const base = Site.baseline();
  const walk = (file: string, v: unknown, path: Path) => {
    if (path.length > 0) out.push({ file, path, kind: kindOf(v) });
    if (Array.isArray(v)) v.forEach((x, i) => walk(file, x, [...path, i]));
    else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(file, x, [...path, k]);
  };
  for (const [file, e] of base.files) if (e.kind === "doc") walk(file, e.doc, []);
  return out;
}

const ALL = places();
/** Settings mappings: objects not holding names, plus the top level of each file. */
const MAPPINGS: Place[] = [
  ...[...Site.baseline().files.keys()].map((file) => ({ file, path: [] as Path, kind: "object" as const })),
  ...ALL.filter((p) => p.kind === "object" && !NAME_MAPS.has(String(p.path[p.path.length - 1]))),
];

/** Values that no field of that kind accepts in its place (no field of the schema takes a union that includes these). */
const WRONG: Record<Place["kind"], unknown[]> = {
  number: ["x", true, [], {}, null],
  string: [7, true, [], {}, null],
  boolean: ["x", 7, [], null],
  array: ["x", 7, {}, null],
  object: ["x", 7, [], null, true],
};

function holder(s: Site, file: string, path: Path): Record<string | number, unknown> {
  let node = s.doc(file) as Record<string | number, unknown>;
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, unknown>;
  return node;
}

const dotted = (p: Path) => p.map((x) => (typeof x === "number" ? `[${x}]` : `.${x}`)).join("").slice(1);

/** Keys whose removal leaves the site invalid: schema-required, or required by a site rule. */
const REQUIRED: [string, Path][] = [
  ["networks.yaml", ["networks", "alpha", "vlan"]],
  ["networks.yaml", ["networks", "alpha", "cidr"]],
  ["networks.yaml", ["networks", "alpha", "gateway"]],
  ["networks.yaml", ["networks", "beta", "egress"]],
  ["networks.yaml", ["networks", "alpha", "vms", "vm1", "mac"]],
  ["networks.yaml", ["networks", "alpha", "dhcp", "start"]],
  ["networks.yaml", ["networks", "beta", "dhcp", "end"]],
  ["networks.yaml", ["networks", "alpha", "port_forwards", 0, "listen"]],
  ["networks.yaml", ["networks", "alpha", "port_forwards", 0, "vm"]],
  ["networks.yaml", ["networks", "alpha", "port_forwards", 0, "port"]],
  ["networks.yaml", ["networks", "alpha", "vms", "vm1", "allow", 0, "to"]],
  ["hosts.yaml", ["hosts", "hv1", "uplink", "mode"]],
  ["hosts.yaml", ["hosts", "gw", "uplink", "members"]],
  ["hosts.yaml", ["hosts", "gw", "uplink"]],
  ["hosts.yaml", ["hosts", "gw", "role"]],
  ["hosts.yaml", ["hosts", "gw", "external_interface"]],
  ["hosts.yaml", ["groups", "vmhosts", "role"]],
  ["site.yaml", ["site", "name"]],
  ["site.yaml", ["site", "domain"]],
  ["site.yaml", ["site", "nats"]],
];

/** A misspelling of `key`: one character dropped, doubled, swapped or changed. */
const typo = fc.record({ how: fc.constantFrom("drop", "double", "swap", "change"), at: fc.nat(), ch: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz_") });

function misspell(key: string, t: { how: string; at: number; ch: string }): string {
  const i = t.at % key.length;
  let out = key;
  if (t.how === "drop" && key.length > 1) out = key.slice(0, i) + key.slice(i + 1);
  else if (t.how === "double") out = key.slice(0, i + 1) + key.slice(i);
  else if (t.how === "swap" && i + 1 < key.length) out = key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2);
  else out = key.slice(0, i) + t.ch + key.slice(i + 1);
  return out === key ? key + t.ch : out;
}

export const typeOperators: Operator[] = [
  op(
    "types",
    "wrong-type-anywhere",
    84,
    fc.record({ place: fc.constantFrom(...ALL), pick: fc.nat() }),
    ({ place, pick }) => {
      const options = WRONG[place.kind];
      const value = options[pick % options.length];
      return {
        detail: `${place.file}: ${dotted(place.path)} (${place.kind}) = ${q(value)}`,
        apply: (s) => {
          holder(s, place.file, place.path)[place.path[place.path.length - 1]!] = value;
        },
      };
    },
  ),
  op(
    "types",
    "unknown-key-anywhere",
    64,
    fc.record({
      place: fc.constantFrom(...MAPPINGS),
      key: fc.oneof(
        { weight: 2, arbitrary: typo.map((t) => ({ typo: t })) },
        { weight: 1, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 12 }).map((k) => ({ raw: k })) },
        { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 6 }).map((k) => ({ raw: k })) },
      ),
      value: fc.constantFrom<unknown>(1, "x", true, [], {}),
    }),
    ({ place, key, value }) => {
      const target = (s: Site) => (place.path.length === 0 ? s.doc(place.file) : (holder(s, place.file, place.path)[place.path[place.path.length - 1]!] as Record<string, unknown>));
      const name = (s: Site): string => {
        const obj = target(s);
        const siblings = Object.keys(obj).filter((k) => k.length > 0);
        if ("raw" in key) return key.raw;
        return misspell(siblings[key.typo.at % Math.max(1, siblings.length)] ?? "key", key.typo);
      };
      const probe = Site.baseline();
      const k0 = name(probe);
      const taken = Object.hasOwn(target(probe), k0) || SCHEMA_KEYS.has(k0) || k0 === "<<";
      const k = taken ? `${k0}_x` : k0;
      return {
        detail: `${place.file}: unknown key ${q(k)} in ${dotted(place.path) || "(top level)"} = ${q(value)}`,
        apply: (s) => {
          target(s)[k] = value;
        },
      };
    },
  ),
  op("types", "required-key-removed", 20, fc.constantFrom(...REQUIRED), ([file, path]) => ({
    detail: `${file}: ${dotted(path)} removed`,
    apply: (s) => {
      delete holder(s, file, path)[path[path.length - 1]!];
    },
  })),
  op(
    "types",
    "number-edge",
    14,
    fc.record({
      field: fc.constantFrom("networks.alpha.vlan", "hosts.hv1.uplink.mtu", "networks.alpha.port_forwards[0].listen", "site.dns_max_ttl", "hosts.hv1.uplink.miimon"),
      value: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53 + 2, 1e-7, 101.5),
    }),
    ({ field, value }) => ({
      detail: `${field} = ${String(value)}`,
      apply: (s) => {
        if (field === "networks.alpha.vlan") s.network("alpha").vlan = value;
        else if (field === "hosts.hv1.uplink.mtu") s.uplink("hv1").mtu = value;
        else if (field === "hosts.hv1.uplink.miimon") s.uplink("hv1").miimon = value;
        else if (field === "site.dns_max_ttl") s.site.dns_max_ttl = value;
        else (s.network("alpha").port_forwards as Record<string, unknown>[])[0]!.listen = value;
      },
    }),
  ),
];
