/**
 * Name operators: interface names that pass the character rules but break
 * commands. iproute2 keywords and their abbreviations as bond or member
 * names (`ip link add up type bond` reads `up` as an option; iproute2's
 * matches() accepts any prefix of a keyword, so `h` is `help`), and user
 * names colliding with the ones netfleet generates: br-<network>,
 * pu-/pb-<network>, gw-<network>, <bond>.<vid>, the trunk bridge.
 */
import fc from "fast-check";
import { op, q, type Operator } from "./operator.ts";
import type { Site } from "./site.ts";

/** Options of `ip link add|set` (ip-link(8)) a bare interface name could be read as. */
export const IPROUTE2_KEYWORDS = [
  "up", "down", "master", "nomaster", "name", "dev", "type", "link", "mtu", "address", "broadcast", "brd",
  "txqueuelen", "txqlen", "qlen", "index", "help", "alias", "netns", "group", "vf", "arp", "multicast",
  "dynamic", "trailers", "promisc", "allmulticast", "protodown", "addrgenmode", "xdp", "numtxqueues", "numrxqueues",
] as const;

/** Abbreviations iproute2 accepts for those keywords (matches(): a prefix of the keyword). */
export const IPROUTE2_PREFIXES = ["h", "he", "hel", "mas", "maste", "na", "nam", "ty", "typ", "li", "lin", "d", "de", "do", "u", "m", "mt", "ad", "addr", "txq", "ne", "netn", "mu", "al", "pr", "nom"] as const;

const WHERE = ["hv1.bond", "gw.bond", "hv1.member", "gw.member", "group.bond", "gw.external_interface", "hv1.trunk_bridge"] as const;

function setInterface(s: Site, where: (typeof WHERE)[number], name: string): void {
  if (where === "hv1.bond") s.uplink("hv1").bond = name;
  else if (where === "gw.bond") s.uplink("gw").bond = name;
  else if (where === "hv1.member") s.uplink("hv1").members = ["eth0", name];
  else if (where === "gw.member") s.uplink("gw").members = [name];
  else if (where === "group.bond") {
    s.groups.vmhosts!.uplink = { bond: name };
  } else if (where === "hv1.trunk_bridge") s.ovsTrunk("hv1", { trunk_bridge: name });
  else s.host("gw").external_interface = name;
}

/** Renames network `from` to `to` everywhere the baseline names it. */
export function renameNetwork(s: Site, from: string, to: string): void {
  const nets = s.doc("networks.yaml").networks as Record<string, unknown>;
  const renamed: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(nets)) renamed[k === from ? to : k] = v;
  s.doc("networks.yaml").networks = renamed;
  const g = s.groups.vmhosts!;
  g.networks = (g.networks as string[]).map((n) => (n === from ? to : n));
}

export const nameOperators: Operator[] = [
  op(
    "names",
    "iproute2-keyword-as-interface",
    48,
    fc.record({ name: fc.constantFrom(...IPROUTE2_KEYWORDS, ...IPROUTE2_PREFIXES), where: fc.constantFrom(...WHERE) }),
    ({ name, where }) => ({
      detail: `${where} = ${q(name)}`,
      apply: (s) => setInterface(s, where, name),
    }),
  ),
  op(
    "names",
    "network-name-is-trunk-bridge",
    8,
    fc.record({
      network: fc.constantFrom("alpha", "beta"),
      form: fc.constantFrom("uplink (default trunk bridge br-uplink)", "custom trunk_bridge br-<network>", "trunk_bridge pu-<other>", "trunk_bridge pb-<other>", "trunk_bridge gw-<other> (backend)"),
      host: fc.constantFrom("hv1", "gw"),
    }),
    ({ network, form, host }) => {
      // gw-<network> exists only on a backend in ovs-trunk mode.
      const on = form.endsWith("(backend)") ? "gw" : host;
      return {
        detail: `${on} in ovs-trunk mode, network ${network}: ${form}`,
        apply: (s) => {
          const other = network === "alpha" ? "beta" : "alpha";
          if (form.startsWith("uplink")) {
            renameNetwork(s, network, "uplink");
            s.ovsTrunk(on);
          } else if (form.startsWith("custom")) {
            s.ovsTrunk(on, { trunk_bridge: `br-${network}` });
          } else {
            s.ovsTrunk(on, { trunk_bridge: `${form.slice(13, 15)}-${other}` });
          }
        },
      };
    },
  ),
  op(
    "names",
    "member-is-generated-name",
    16,
    fc.record({ host: fc.constantFrom("hv1", "gw"), ovs: fc.boolean(), pick: fc.nat() }),
    ({ host, ovs, pick }) => {
      const name = pickGenerated(host, ovs, pick);
      return {
        detail: `${host} (${ovs ? "ovs-trunk" : "kernel"}).uplink.members gets ${q(name)}`,
        apply: (s) => {
          if (ovs) s.ovsTrunk(host);
          const up = s.uplink(host);
          up.members = [...(up.members as string[]), name];
        },
      };
    },
  ),
  op(
    "names",
    "bond-is-generated-name",
    8,
    fc.record({ host: fc.constantFrom("hv1", "gw"), ovs: fc.boolean(), pick: fc.nat() }),
    ({ host, ovs, pick }) => {
      const name = pickGenerated(host, ovs, pick, "bond0", true);
      return {
        detail: `${host} (${ovs ? "ovs-trunk" : "kernel"}).uplink.bond = ${q(name)}`,
        apply: (s) => {
          if (ovs) s.ovsTrunk(host, { bond: name });
          else s.uplink(host).bond = name;
        },
      };
    },
  ),
  op(
    "names",
    "external-interface-is-ours",
    14,
    fc.record({ ovs: fc.boolean(), pick: fc.nat(), list: fc.boolean(), bond: fc.constantFrom("bond0", "bond7"), member: fc.boolean() }),
    ({ ovs, pick, list, bond, member }) => {
      const name = member ? (pick % 2 === 0 ? "eth0" : bond) : pickGenerated("gw", ovs, pick, bond);
      return {
        detail: `gw (${ovs ? "ovs-trunk" : "kernel"}, bond ${bond}) external_interface${list ? "s [wan0, X]" : ""} = ${q(name)}`,
        apply: (s) => {
          if (ovs) s.ovsTrunk("gw", { members: ["eth0", "eth1"] });
          s.uplink("gw").bond = bond;
          if (list) {
            delete s.host("gw").external_interface;
            s.host("gw").external_interfaces = ["wan0", name];
          } else s.host("gw").external_interface = name;
        },
      };
    },
  ),
  op(
    "names",
    "name-reserved-for-a-network",
    8,
    fc.record({ name: fc.constantFrom("pu-alpha", "pb-beta", "gw-alpha", "gw-beta", "br-beta"), where: fc.constantFrom("hv1.member", "gw.member", "hv1.bond", "gw.external_interface") }),
    ({ name, where }) => ({
      detail: `${where} = ${q(name)} on a kernel-mode host (reserved for a network of the site whatever the mode)`,
      apply: (s) => setInterface(s, where, name),
    }),
  ),
  op("names", "external-interface-from-a-group-is-ours", 3, fc.constantFrom("eth0", "bond0", "bond0.101"), (name) => ({
    detail: `gw takes role and external_interface ${q(name)} from a group "edge"`,
    apply: (s) => {
      s.groups.edge = { role: "backend", external_interface: name };
      const gw = s.host("gw");
      delete gw.role;
      delete gw.external_interface;
      gw.groups = ["edge"];
    },
  })),
];

/**
 * One of the names netfleet creates on `host` of the baseline (compile.ts),
 * or the kernel's own lo and ovs-system (the OVS datapath): br-<network> always; kernel mode: <bond>.<vid>; ovs-trunk: the patch pair
 * pu-/pb-<network> and the trunk bridge br-uplink, and on the backend the
 * gateway ports gw-<network>.
 */
function pickGenerated(host: string, ovs: boolean, pick: number, bond = "bond0", forBond = false): string {
  const names = ["br-alpha", "br-beta", "lo", "ovs-system"];
  // A bond named bond0.101 renames its own VLAN interfaces (bond0.101.101): no collision.
  if (!ovs && !forBond) names.push(`${bond}.101`, `${bond}.102`);
  else {
    names.push("pu-alpha", "pb-beta", "br-uplink");
    if (host === "gw") names.push("gw-alpha", "gw-beta");
  }
  return names[pick % names.length]!;
}
