/**
 * The seeded hostile-inventory generator: every operator of the catalog
 * draws its variants with fast-check from one run seed (printed with every
 * failure; NETFLEET_HOSTILE_SEED replays a run), each applied to a fresh
 * copy of the valid baseline site. Beside them, legitimate twins of the same
 * kinds that must still load (the positive controls).
 */
import fc from "fast-check";
import type { Category, Mutation, Operator } from "./operator.ts";
import { Site } from "./site.ts";
import { fileOperators } from "./operators-files.ts";
import { yamlOperators } from "./operators-yaml.ts";
import { nameOperators } from "./operators-names.ts";
import { valueOperators } from "./operators-values.ts";
import { typeOperators } from "./operators-types.ts";

/** The run seed: NETFLEET_HOSTILE_SEED when set (to replay a failure), else a fixed one. */
export function hostileSeed(): number {
  const env = process.env.NETFLEET_HOSTILE_SEED;
  if (env === undefined || env === "") return 1_300_013;
  const n = Number(env);
  if (!Number.isSafeInteger(n)) throw new Error(`NETFLEET_HOSTILE_SEED must be an integer, not ${JSON.stringify(env)}`);
  return n;
}

/** The catalog, in the order cases are drawn and reported. */
export const OPERATORS: Operator[] = [...fileOperators, ...yamlOperators, ...nameOperators, ...valueOperators, ...typeOperators];
/** The groups, in report order. */
export const CATEGORIES: Category[] = ["files", "yaml", "names", "addresses", "vlans", "ports", "uplinks", "types"];

/** One generated site: an operator's mutation of the baseline. */
export interface HostileCase {
  /** `category/operator#k`, unique in a run; also the folder name (with / and # replaced). */
  id: string;
  operator: Operator;
  mutation: Mutation;
  /** A fresh site with the mutation applied (built on each call). */
  build(): Site;
}

/** FNV-1a of the operator name, so adding an operator does not change another's draws. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** Up to `op.variants` distinct (by detail) mutations of one operator, drawn from the run seed. */
export function drawMutations(op: Operator, seed: number): Mutation[] {
  const drawn = fc.sample(op.arb, { seed: (seed ^ nameHash(op.name)) | 0, numRuns: op.variants * 6 });
  const seen = new Set<string>();
  const out: Mutation[] = [];
  for (const m of drawn) {
    if (seen.has(m.detail)) continue;
    seen.add(m.detail);
    out.push(m);
    if (out.length === op.variants) break;
  }
  return out;
}

/** Every case of a run, operator by operator in catalog order. */
export function generateCases(seed: number): HostileCase[] {
  const cases: HostileCase[] = [];
  const names = new Set<string>();
  for (const op of OPERATORS) {
    if (names.has(op.name)) throw new Error(`generator: operator ${op.name} twice in the catalog`);
    names.add(op.name);
    drawMutations(op, seed).forEach((mutation, k) => {
      cases.push({
        id: `${op.category}/${op.name}#${k}`,
        operator: op,
        mutation,
        build: () => {
          const site = Site.baseline();
          mutation.apply(site);
          return site;
        },
      });
    });
  }
  return cases;
}

/** A folder name for a case id. */
export const folderOf = (id: string): string => id.replace(/[/#]/g, "_");

/**
 * Legitimate sites of the same kinds as the operators' (positive controls):
 * each must load, so a refusal above is the mutation's doing, not a
 * harness that refuses everything.
 */
export const CONTROLS: { name: string; apply(site: Site): void }[] = [
  { name: "the baseline itself", apply: () => {} },
  {
    name: "VLAN 1 with allow_vlan_1: true",
    apply: (s) => {
      s.site.allow_vlan_1 = true;
      s.network("beta").vlan = 1;
    },
  },
  { name: "ovs-trunk balance-tcp with lacp active", apply: (s) => void s.ovsTrunk("hv1", { bond_mode: "balance-tcp", lacp: "active" }) },
  { name: "ovs-trunk balance-tcp, lacp left to its default", apply: (s) => void s.ovsTrunk("hv1", { bond_mode: "balance-tcp" }) },
  { name: "kernel 802.3ad with lacp passive", apply: (s) => void Object.assign(s.uplink("hv1"), { bond_mode: "802.3ad", lacp: "passive" }) },
  { name: "kernel active-backup with lacp off", apply: (s) => void Object.assign(s.uplink("hv1"), { lacp: "off" }) },
  { name: "kernel uplink carrying the management address", apply: (s) => void Object.assign(s.uplink("hv1"), { carries_management: true }) },
  { name: "MTU 9000 on every host", apply: (s) => {
    s.uplink("hv1").mtu = 9000;
    s.uplink("gw").mtu = 9000;
    s.addHost2({ mode: "kernel", members: ["eth0", "eth1"], mtu: 9000 });
  } },
  { name: "bond and members with ordinary names (bond1, ens3, enp1s0f1)", apply: (s) => void Object.assign(s.uplink("hv1"), { bond: "bond1", members: ["ens3", "enp1s0f1"] }) },
  { name: "external_interfaces of two plain NICs", apply: (s) => {
    delete s.host("gw").external_interface;
    s.host("gw").external_interfaces = ["wan0", "wan1"];
  } },
  { name: "allow entry with ports [443, 8443] and a port_forward to 65535", apply: (s) => {
    const vm1 = (s.network("alpha").vms as Record<string, Record<string, unknown>>).vm1!;
    (vm1.allow as Record<string, unknown>[])[0]!.ports = [443, 8443];
    (s.network("alpha").port_forwards as Record<string, unknown>[])[0]!.port = 65535;
  } },
  { name: "gateway_services with a range 8000-8100", apply: (s) => void (s.network("alpha").gateway_services = [{ ports: [22, "8000-8100"] }]) },
  { name: "networks on 172.16.5.0/24 and 192.168.7.0/24", apply: (s) => {
    for (const [name, prefix] of [["alpha", "172.16.5"], ["beta", "192.168.7"]] as const) {
      const n = s.network(name);
      Object.assign(n, { cidr: `${prefix}.0/24`, gateway: `${prefix}.1`, dhcp: { start: `${prefix}.100`, end: `${prefix}.199` } });
      for (const vm of Object.values(n.vms as Record<string, Record<string, unknown>>)) if (vm.ip !== undefined) vm.ip = `${prefix}.11`;
    }
  } },
  { name: "labels with UTF-8 text (é, 日本) and an 1 MiB comment", apply: (s) => {
    s.host("hv1").labels = { owner: "équipe réseau 日本" };
    s.setText("hosts.yaml", "#" + "x".repeat(1024 * 1024) + "\n" + s.text("hosts.yaml"));
  } },
  { name: "files with CRLF line endings (written on Windows)", apply: (s) => {
    for (const f of ["site.yaml", "hosts.yaml", "networks.yaml"]) s.setText(f, s.text(f).replace(/\n/g, "\r\n"));
  } },
  { name: "a file starting with a UTF-8 byte order mark", apply: (s) => void s.setText("site.yaml", "\ufeff" + s.text("site.yaml")) },
  { name: "YAML anchors and aliases used sparingly", apply: (s) => {
    // gw comes first in hosts.yaml: the anchor is there, hv1 aliases it.
    s.host("gw").labels = "LABELS1";
    s.host("hv1").labels = "LABELS2";
    s.setText("hosts.yaml", s.text("hosts.yaml").replace("LABELS1", "&l {team: net}").replace("LABELS2", "*l"));
  } },
];
