import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProblem, InventoryError, IPROUTE2_KEYWORDS, iproute2Keyword, loadInventory, type Inventory } from "@netfleet/shared";
import { compileSite } from "../../packages/controller/src/compile/compile.ts";

// Each rule of the loader next to its positive control: small variants of
// bad-inventories/_baseline, one setting changed, loaded for real. A refused
// variant must name the place and say why; the legitimate neighbour of the
// same kind must still load.
const baseline = join(import.meta.dirname, "bad-inventories", "_baseline");
const made: string[] = [];
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

type Edit = [file: string, old: string, replacement: string];

/** A copy of the baseline with each edit applied (each `old` must occur). */
function variant(...edits: Edit[]): string {
  const dir = mkdtempSync(join(tmpdir(), "netfleet-rules-"));
  made.push(dir);
  cpSync(baseline, dir, { recursive: true });
  for (const [file, old, replacement] of edits) {
    const path = join(dir, file);
    const text = readFileSync(path, "utf8");
    if (!text.includes(old)) throw new Error(`${file} has no ${JSON.stringify(old)}`);
    writeFileSync(path, text.replace(old, replacement));
  }
  return dir;
}

/** The problems of a variant as `file:line:col: path: message`; [] when it loads. */
function problems(dir: string): string[] {
  try {
    loadInventory(dir, { cwd: dir });
    return [];
  } catch (err) {
    if (err instanceof InventoryError) return err.problems.map(formatProblem);
    throw err;
  }
}

function load(dir: string): Inventory {
  return loadInventory(dir, { cwd: dir });
}

const HV1_UPLINK = "    uplink:\n      mode: kernel\n      members: [eth0, eth1]\n";
const GW_UPLINK = "    uplink:\n      mode: kernel\n      members: [eth0]\n";
/** hv1's uplink replaced by these lines (under `uplink:`). */
const hv1 = (...lines: string[]): Edit => ["hosts.yaml", HV1_UPLINK, `    uplink:\n${lines.map((l) => `      ${l}\n`).join("")}`];
const gw = (...lines: string[]): Edit => ["hosts.yaml", GW_UPLINK, `    uplink:\n${lines.map((l) => `      ${l}\n`).join("")}`];
/** Network beta moved to `a.b.c.0/len` (gateway .1, DHCP .100-.199). */
const beta = (prefix: string, len = 24): Edit => [
  "networks.yaml",
  "    cidr: 10.2.0.0/24\n    gateway: 10.2.0.1\n    dhcp:\n      start: 10.2.0.100\n      end: 10.2.0.199\n",
  `    cidr: ${prefix}.0/${len}\n    gateway: ${prefix}.1\n    dhcp:\n      start: ${prefix}.100\n      end: ${prefix}.199\n`,
];

describe("interface names: iproute2 keywords", () => {
  it("takes a name equal to or a prefix of a keyword for that keyword, as iproute2's matches() does", () => {
    expect(iproute2Keyword("h")).toBe("help");
    expect(iproute2Keyword("mast")).toBe("master");
    expect(iproute2Keyword("up")).toBe("up");
    expect(iproute2Keyword("t")).toBe("txqlen");
    for (const name of ["eth0", "eth1", "eno1", "enp3s0", "ens3", "wan0", "bond0", "bond1", "br-uplink", "br-trunk"]) {
      expect(iproute2Keyword(name), name).toBeUndefined();
    }
  });

  it("refuses up, h and master as a bond name while bond1 loads", () => {
    expect(problems(variant(hv1("mode: kernel", "bond: bond1", "members: [eth0, eth1]")))).toEqual([]);
    for (const bad of ["up", "h", "master"]) {
      const out = problems(variant(hv1("mode: kernel", `bond: ${bad}`, "members: [eth0, eth1]")));
      expect(out, bad).toHaveLength(1);
      expect(out[0]).toMatch(new RegExp(`^hosts\\.yaml:18:13: hosts\\.hv1\\.uplink\\.bond: bond name "${bad}" is (the|a prefix of the) iproute2 keyword`));
    }
  });

  it("refuses every listed keyword as a bond member, at the member", () => {
    const legal = IPROUTE2_KEYWORDS.filter((k) => /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(k));
    expect(legal.length).toBeGreaterThan(60);
    for (const keyword of legal) {
      const out = problems(variant(hv1("mode: kernel", `members: [eth0, ${keyword}]`)));
      expect(out, keyword).toEqual([expect.stringMatching(/^hosts\.yaml:18:23: hosts\.hv1\.uplink\.members\[1\]: bond member name .* iproute2 keyword/)]);
    }
  });
});

describe("interface names: the ones netfleet creates", () => {
  it("refuses network uplink on an ovs-trunk host with the default trunk bridge br-uplink, naming the host; a kernel host or another trunk_bridge is fine", () => {
    const rename: Edit[] = [["hosts.yaml", "networks: [alpha, beta]", "networks: [alpha, uplink]"], ["networks.yaml", "  beta:\n", "  uplink:\n"]];
    expect(problems(variant(...rename))).toEqual([]);
    expect(problems(variant(...rename, hv1("mode: ovs-trunk", "members: [eth0, eth1]", "trunk_bridge: br-trunk")))).toEqual([]);
    expect(problems(variant(...rename, hv1("mode: ovs-trunk", "members: [eth0, eth1]")))).toEqual([
      "networks.yaml:22:3: networks.uplink: network uplink's bridge br-uplink is the trunk bridge of ovs-trunk host hv1 (the default trunk_bridge): a host carrying the network would hold it and its trunk in one bridge; rename the network or set uplink.trunk_bridge on that host to another name",
    ]);
  });

  it("refuses an external interface that is our VLAN interface, a member or lo; wan0 and an unused bond0.999 load", () => {
    const ext = (name: string): Edit => ["hosts.yaml", "external_interface: wan0", `external_interface: ${name}`];
    expect(problems(variant(ext("wan0")))).toEqual([]);
    expect(problems(variant(ext("bond0.999")))).toEqual([]);
    for (const bad of ["bond0.101", "bond0.102", "eth0", "bond0", "lo", "ovs-system"]) {
      expect(problems(variant(ext(bad))), bad).toEqual([expect.stringMatching(/^hosts\.yaml:9:25: hosts\.gw\.external_interface: /)]);
    }
  });

  it("refuses a trunk bridge named like a member, while a distinct one loads", () => {
    expect(problems(variant(hv1("mode: ovs-trunk", "members: [eth0, eth1]", "trunk_bridge: br-trunk")))).toEqual([]);
    expect(problems(variant(hv1("mode: ovs-trunk", "members: [eth0, eth1]", "trunk_bridge: eth0")))).toEqual([
      expect.stringMatching(/^hosts\.yaml:19:21: hosts\.hv1\.uplink\.trunk_bridge: trunk bridge "eth0" has the name of the bond member at hosts\.yaml:18:17;/),
    ]);
  });
});

describe("addresses: special-purpose IPv4 blocks", () => {
  it("refuses each block a VM network cannot use, naming it and its RFC", () => {
    const refused: [string, string, number?][] = [
      ["0.2.0", "0.0.0.0/8"],
      ["127.2.0", "127.0.0.0/8"],
      ["169.254.2", "169.254.0.0/16"],
      ["192.0.0", "192.0.0.0/24"],
      ["224.2.0", "224.0.0.0/4"],
      ["239.255.255", "224.0.0.0/4"],
      ["240.2.0", "240.0.0.0/4"],
      ["255.255.255", "240.0.0.0/4"],
    ];
    for (const [prefix, block] of refused) {
      const out = problems(variant(beta(prefix)));
      expect(out, prefix).toEqual([expect.stringMatching(new RegExp(`^networks\\.yaml:24:11: networks\\.beta\\.cidr: ${prefix.replace(/\./g, "\\.")}\\.0/24 lies in ${block.replace(/\./g, "\\.")} \\(.*RFC \\d+`))]);
    }
  });

  it("accepts the neighbours of those blocks and the private, shared and documentation blocks", () => {
    for (const prefix of ["10.2.0", "1.0.0", "126.255.255", "128.0.0", "169.253.255", "169.255.0", "192.0.1", "192.0.2", "172.16.2", "192.168.2", "100.64.2", "198.18.2", "198.51.100", "223.255.255"]) {
      expect(problems(variant(beta(prefix))), prefix).toEqual([]);
    }
  });

  it("says overlaps for a network wider than the block", () => {
    expect(problems(variant(beta("224.0.0", 3)))[0]).toMatch(/networks\.beta\.cidr: 224\.0\.0\.0\/3 overlaps 224\.0\.0\.0\/4 \(multicast, RFC 5771\)/);
  });
});

describe("VLANs and allow entries", () => {
  it("refuses vlan 1 unless the site sets allow_vlan_1: true; vlan 2 loads", () => {
    const vlan1: Edit = ["networks.yaml", "    vlan: 102\n", "    vlan: 1\n"];
    expect(problems(variant(vlan1))).toEqual([expect.stringMatching(/^networks\.yaml:23:11: networks\.beta\.vlan: VLAN 1 is the native \(untagged\) VLAN .* set allow_vlan_1: true in site \(site\.yaml:1:1\)/)]);
    expect(problems(variant(["networks.yaml", "    vlan: 102\n", "    vlan: 2\n"]))).toEqual([]);
    const allowed = load(variant(vlan1, ["site.yaml", "  management: 10.0.0.0/24\n", "  management: 10.0.0.0/24\n  allow_vlan_1: true\n"]));
    expect(allowed.networks.find((n) => n.name === "beta")?.vlan).toBe(1);
  });

  it("refuses ports: [] in an allow entry at the list; ports: [443] and no ports load", () => {
    expect(problems(variant(["networks.yaml", "            ports: [443]\n", "            ports: []\n"]))).toEqual([
      "networks.yaml:17:20: networks.alpha.vms.vm1.allow[0].ports: give at least one port, or leave ports out for every port",
    ]);
    expect(load(variant()).networks[0]!.vms[0]!.allow[0]!.ports).toEqual([443]);
    expect(load(variant(["networks.yaml", "            ports: [443]\n", ""])).networks[0]!.vms[0]!.allow[0]!.ports).toBeUndefined();
  });
});

describe("uplinks: lacp", () => {
  const kernel = (...more: string[]) => variant(hv1("mode: kernel", "members: [eth0, eth1]", ...more));
  const trunk = (...more: string[]) => variant(hv1("mode: ovs-trunk", "members: [eth0, eth1]", ...more));
  const at = /^hosts\.yaml:\d+:13: hosts\.hv1\.uplink\.lacp: /;

  it("accepts 802.3ad with lacp active, passive or left out, and balance-tcp with active or passive", () => {
    for (const lacp of ["lacp: active", "lacp: passive"]) {
      expect(problems(kernel("bond_mode: 802.3ad", lacp)), lacp).toEqual([]);
      expect(problems(trunk("bond_mode: balance-tcp", lacp)), lacp).toEqual([]);
    }
    expect(problems(kernel("lacp: off"))).toEqual([]);
  });

  it("carries what it accepts into the assignment: 802.3ad passive, 802.3ad and balance-tcp by default active", () => {
    const bondOf = (dir: string) => compileSite(load(dir)).find((a) => a.host === "hv1")!.resources.find((r) => r.kind === "kernel-bond" || (r.kind === "ovs-bridge" && r.name === "br-uplink"));
    expect(bondOf(kernel("bond_mode: 802.3ad", "lacp: passive"))).toMatchObject({ kind: "kernel-bond", mode: "802.3ad", lacpActive: false });
    expect(bondOf(kernel("bond_mode: 802.3ad"))).toMatchObject({ kind: "kernel-bond", mode: "802.3ad", lacpActive: true });
    const trunkBond = bondOf(trunk("bond_mode: balance-tcp"));
    expect(trunkBond?.kind === "ovs-bridge" && trunkBond.ports[0]).toMatchObject({ type: "bond", bond_mode: "balance-tcp", lacp: "active" });
  });

  it("refuses lacp active or passive on bond modes without LACP", () => {
    for (const mode of ["active-backup", "balance-rr", "balance-xor", "broadcast", "balance-tlb", "balance-alb"]) {
      expect(problems(kernel(`bond_mode: ${mode}`, "lacp: passive")), mode).toEqual([expect.stringMatching(at)]);
    }
    for (const mode of ["active-backup", "balance-slb"]) {
      expect(problems(trunk(`bond_mode: ${mode}`, "lacp: active")), mode).toEqual([expect.stringMatching(at)]);
    }
  });

  it("refuses lacp off with 802.3ad and balance-tcp", () => {
    expect(problems(kernel("bond_mode: 802.3ad", "lacp: off"))).toEqual([expect.stringMatching(/hosts\.hv1\.uplink\.lacp: lacp off .* 802\.3ad is LACP itself/)]);
    expect(problems(trunk("bond_mode: balance-tcp", "lacp: off"))).toEqual([expect.stringMatching(/hosts\.hv1\.uplink\.lacp: lacp off .* the bond passes no frame/)]);
  });

  it("refuses lacp on a single-member ovs-trunk uplink (a plain port), which loads without it", () => {
    expect(problems(variant(gw("mode: ovs-trunk", "members: [eth0]", "bond_mode: balance-tcp")))).toEqual([]);
    expect(problems(variant(gw("mode: ovs-trunk", "members: [eth0]", "bond_mode: balance-tcp", "lacp: active")))).toEqual([
      expect.stringMatching(/^hosts\.yaml:14:13: hosts\.gw\.uplink\.lacp: lacp active on host gw: an ovs-trunk uplink with one member is a plain OVS system port/),
    ]);
  });
});

describe("uplinks: carries_management", () => {
  it("loads in kernel mode with the host's address and the site's management", () => {
    const hv = load(variant(hv1("mode: kernel", "members: [eth0, eth1]", "carries_management: true"))).hosts.find((h) => h.name === "hv1")!;
    expect(hv.uplink.carries_management).toBe(true);
    expect(hv.address).toBe("10.0.0.11");
    const inv = load(variant(hv1("mode: kernel", "members: [eth0, eth1]", "carries_management: true")));
    const bond = compileSite(inv).find((a) => a.host === "hv1")!.resources.find((r) => r.kind === "kernel-bond");
    expect(bond).toMatchObject({ name: "bond0", management: { address: "10.0.0.11/24" } });
  });

  it("refuses it in ovs-trunk mode, without address, without site management", () => {
    const flag = "carries_management: true";
    expect(problems(variant(hv1("mode: ovs-trunk", "members: [eth0, eth1]", flag)))).toEqual([expect.stringMatching(/hosts\.hv1\.uplink\.carries_management: .* not supported in ovs-trunk mode/)]);
    expect(problems(variant(["hosts.yaml", "    address: 10.0.0.11\n", ""], hv1("mode: kernel", "members: [eth0, eth1]", flag)))).toEqual([
      expect.stringMatching(/hosts\.hv1\.uplink\.carries_management: .* needs the host's address/),
    ]);
    expect(problems(variant(["site.yaml", "  management: 10.0.0.0/24\n", ""], hv1("mode: kernel", "members: [eth0, eth1]", flag)))).toEqual([
      expect.stringMatching(/hosts\.hv1\.uplink\.carries_management: .* needs site\.management/),
    ]);
  });
});

describe("uplinks: MTU across hosts sharing a network", () => {
  it("refuses different uplink MTUs, naming both hosts, their MTUs and where each was set", () => {
    const out = problems(variant(hv1("mode: kernel", "members: [eth0, eth1]", "mtu: 9000")));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^hosts\.yaml:19:12: hosts\.hv1\.uplink\.mtu: uplink mtu 9000 of host hv1 \(set at hosts\.yaml:19:7\) differs from uplink mtu 1500 of host gw \(the default\), and both carry networks alpha, beta: .* set mtu: 1500 \(or less\) on networks alpha, beta .* or give both hosts the same uplink mtu$/);
  });

  it("reports each pair of hosts that disagree, with the networks they share", () => {
    const hv2 = "  hv2:\n    role: vmhost\n    networks: [beta]\n    address: 10.0.0.12\n    uplink: { mode: kernel, members: [eth0], mtu: 1400 }\n";
    const out = problems(variant(hv1("mode: kernel", "members: [eth0, eth1]", "mtu: 9000"), ["hosts.yaml", "  hv1:\n", `${hv2}  hv1:\n`]));
    expect(out.map((p) => /uplink mtu (\d+) of host (\w+) .* uplink mtu (\d+) of host (\w+) .* both carry (networks? [\w, ]+):/.exec(p)?.slice(1).join(" "))).toEqual([
      "1500 gw 1400 hv2 network beta",
      "9000 hv1 1500 gw network alpha",
      "9000 hv1 1400 hv2 network beta",
    ]);
  });

  it("accepts them when every shared network sets mtu, and equal uplink MTUs", () => {
    const jumbo = hv1("mode: kernel", "members: [eth0, eth1]", "mtu: 9000");
    const pinned = variant(jumbo, ["networks.yaml", "    egress: allowlist\n", "    egress: allowlist\n    mtu: 1500\n"], ["networks.yaml", "    egress: open\n", "    egress: open\n    mtu: 1500\n"]);
    expect(load(pinned).networks.map((n) => n.mtu)).toEqual([1500, 1500]);
    const both = load(variant(jumbo, gw("mode: kernel", "members: [eth0]", "mtu: 9000")));
    expect(both.networks.map((n) => n.mtu)).toEqual([9000, 9000]);
  });
});

describe("addresses: the site's resolvers and NATS servers", () => {
  const dns = (list: string) => variant(["site.yaml", "  management: 10.0.0.0/24\n", `  management: 10.0.0.0/24\n  upstream_dns: [${list}]\n`]);
  const nats = (list: string) => variant(["site.yaml", "nats: [nats://10.0.0.254:4222]", `nats: [${list}]`]);

  it("refuses an upstream resolver in a VM network, at a gateway or in 0/8, 224/4, 240/4", () => {
    for (const [addr, why] of [
      ["10.2.0.50", "lies in VM network beta (10.2.0.0/24)"],
      ["10.1.0.1", "is the gateway of network alpha"],
      ["0.0.0.0", "lies in 0.0.0.0/8"],
      ["224.0.0.251", "lies in 224.0.0.0/4"],
      ["255.255.255.255", "lies in 240.0.0.0/4"],
    ] as const) {
      const out = problems(dns(addr));
      expect(out, addr).toHaveLength(1);
      expect(out[0]).toContain(`site.upstream_dns[0]: upstream resolver ${addr} ${why}`);
    }
  });

  it("loads resolvers outside the VM networks: documentation, management, private, link-local, the backend's own on loopback", () => {
    const inventory = load(dns("192.0.2.53, 10.0.0.53, 10.3.0.1, 169.254.169.253, 127.0.0.53"));
    expect(inventory.site.upstream_dns).toEqual(["192.0.2.53", "10.0.0.53", "10.3.0.1", "169.254.169.253", "127.0.0.53"]);
  });

  it("refuses a NATS host in a VM network or in 0/8, 224/4, 240/4; loopback, a management address and a DNS name load", () => {
    expect(problems(nats("nats://10.1.0.11:4222"))).toEqual([
      "site.yaml:4:10: site.nats[0]: NATS server 10.1.0.11 lies in VM network alpha (10.1.0.0/24): a VM there would take the agents' connections and speak for the controller; give an address outside the site's VM networks (e.g. on the management network)",
    ]);
    for (const host of ["0.0.0.0", "239.1.1.1", "255.255.255.255"]) expect(problems(nats(`nats://${host}:4222`)), host).toHaveLength(1);
    expect(load(nats("nats://127.0.0.1:4222, nats://10.0.0.254:4222, tls://nats.base.test:4222")).site.nats).toHaveLength(3);
  });
});

describe("interface names: the ones libvirt, OVS and the bonding driver create", () => {
  it("refuses vnet<N>, macvtap<N>, virbr<N>, virbr<N>-nic, ovs-netdev, bonding_masters as a member; eth0, eth1 and look-alikes without the digits load", () => {
    for (const name of ["vnet0", "vnet12", "macvtap0", "virbr0", "virbr1-nic", "ovs-netdev", "bonding_masters"]) {
      const out = problems(variant(["hosts.yaml", "members: [eth0, eth1]", `members: [eth0, ${name}]`]));
      expect(out, name).toHaveLength(1);
      expect(out[0]).toContain(`hosts.hv1.uplink.members[1]: bond member "${name}" `);
    }
    for (const name of ["eth1", "vnet", "vnetx", "virbr0x", "macvtapa", "ovs-net"]) {
      expect(problems(variant(["hosts.yaml", "members: [eth0, eth1]", `members: [eth0, ${name}]`])), name).toEqual([]);
    }
  });

  it("refuses them as the external interface and the bond; wan0 and bond1 load", () => {
    expect(problems(variant(["hosts.yaml", "external_interface: wan0", "external_interface: vnet0"]))[0]).toContain('external interface "vnet0" is of the form vnet<N>');
    expect(problems(variant(["hosts.yaml", "      members: [eth0, eth1]", "      bond: virbr0\n      members: [eth0, eth1]"]))[0]).toContain('bond "virbr0" is of the form virbr<N>');
    expect(load(variant(["hosts.yaml", "      members: [eth0, eth1]", "      bond: bond1\n      members: [eth0, eth1]"])).hosts.map((h) => h.uplink.bond)).toContain("bond1");
  });
});
