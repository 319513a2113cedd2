import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { canonicalJson, decodeAssignment, loadInventory } from "@netfleet/shared";
import { compileSite, gatewayMac } from "./compile.ts";

const root = join(import.meta.dirname, "..", "..", "..", "..");
const site = (name: string) => loadInventory(join(root, "inventories", name));

describe("planner", () => {
  it("a host's own uplink block overrides only the keys it names; the rest comes from its groups", () => {
    const inv = loadInventory(join(import.meta.dirname, "..", "..", "..", "..", "inventories", "reference"));
    const hv3 = inv.hosts.find((h) => h.name === "hv3")!;
    // hv3 sets mode and bond_mode; members, miimon and mtu are the vmhosts group's
    expect(hv3.uplink).toMatchObject({ mode: "ovs-trunk", bond_mode: "active-backup", members: ["eno1", "eno2"], miimon: 100, mtu: 9000 });
    // and defaults still fill what nobody set
    expect(hv3.uplink).toMatchObject({ bond: "bond0", datapath: "system", trunk_bridge: "br-uplink" });
    const a = compileSite(inv).find((x) => x.host === "hv3")!;
    expect(JSON.stringify(a)).toContain('"mtu":9000');
  });

  it("is deterministic: the same inventory gives byte-identical assignments", () => {
    const a = compileSite(site("reference")).map((x) => canonicalJson(x));
    const b = compileSite(site("reference")).map((x) => canonicalJson(x));
    expect(a).toEqual(b);
  });

  it("does not depend on the order of entries in the files", () => {
    const dir = mkdtempSync(join(tmpdir(), "nf-order-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(join(root, "inventories", "reference"), dir, { recursive: true });
    const hosts = readFileSync(join(dir, "hosts.yaml"), "utf8");
    // Move the backend after the VM hosts: same site, other order.
    const [head, rest] = hosts.split("\nhosts:\n");
    const blocks = rest!.split(/\n(?=  [a-z0-9-]+:\n)/);
    writeFileSync(join(dir, "hosts.yaml"), `${head}\nhosts:\n${[...blocks.slice(1), blocks[0]].join("\n")}\n`);
    const hashes = (s: ReturnType<typeof site>) => compileSite(s).map((x) => `${x.host}:${x.hash}`);
    expect(hashes(loadInventory(dir))).toEqual(hashes(site("reference")));
  });

  it("a change in the inventory changes the hash of the affected hosts only", () => {
    const dir = mkdtempSync(join(tmpdir(), "nf-change-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    cpSync(join(root, "inventories", "reference"), dir, { recursive: true });
    const path = join(dir, "hosts.yaml");
    writeFileSync(path, readFileSync(path, "utf8").replace("      mode: ovs-trunk\n", "      mode: ovs-trunk\n      trunk_bridge: br-trunk\n"));
    const before = new Map(compileSite(site("reference")).map((a) => [a.host, a.hash]));
    const after = new Map(compileSite(loadInventory(dir)).map((a) => [a.host, a.hash]));
    expect([...after].filter(([h, hash]) => before.get(h) !== hash).map(([h]) => h)).toEqual(["hv3"]);
  });

  it("compiles the reference backend: bond, bond0.<vid> with the gateway addresses, forwarding", () => {
    const backend = compileSite(site("reference")).find((a) => a.host === "backend")!;
    expect(backend.resources.map((r) => `${r.kind}[${r.name}]`)).toEqual([
      "kernel-bond[bond0]",
      "vlan-interface[bond0.1081]",
      "vlan-interface[bond0.1082]",
      "vlan-interface[bond0.1083]",
      "interface-address[bond0.1081]",
      "interface-address[bond0.1082]",
      "interface-address[bond0.1083]",
      "sysctl[net.ipv4.ip_forward]",
      "nft-table[netfleet]",
      "dnsmasq[secure]",
      "dnsmasq[service]",
      "dnsmasq[datain]",
      "prune[host]",
    ]);
    expect(backend.resources[4]).toEqual({ kind: "interface-address", name: "bond0.1081", addresses: ["192.168.128.1/17"], mac: gatewayMac(1081) });
  });

  it("compiles a kernel-mode VM host: bridge per network on its VLAN interface, libvirt network with portgroups", () => {
    const hv1 = compileSite(site("reference")).find((a) => a.host === "hv1")!;
    expect(hv1.resources.find((r) => r.name === "br-secure")).toEqual({ kind: "ovs-bridge", name: "br-secure", datapath: "system", ports: [{ name: "bond0.1081", type: "system" }], failMode: "secure" });
    // no vlan-<vid> portgroup: the bridge sits behind a tagged uplink, a tag on the VM port would double-tag
    expect(hv1.resources.find((r) => r.kind === "libvirt-network" && r.name === "secure")).toEqual({
      kind: "libvirt-network",
      name: "secure",
      bridge: "br-secure",
      portgroups: [{ name: "default", default: true }, { name: "isolated", default: false, profileId: "netfleet-isolated" }],
    });
  });

  it("VM port policy: the backend as lease source, the isolated portgroup's profile, extra addresses and cluster groups", () => {
    const hv1 = compileSite(site("reference")).find((a) => a.host === "hv1")!;
    const policy = hv1.resources.find((r) => r.kind === "vm-port-policy" && r.network === "secure");
    expect(policy).toMatchObject({ leaseSource: "backend", isolatedProfile: "netfleet-isolated", isolatedDefault: true });
    expect(policy?.kind === "vm-port-policy" && policy.vms.every((v) => v.isolated)).toBe(true);
  });

  it("compiles an ovs-trunk VM host: OVS bond with trunks and tagged patch ports", () => {
    const hv3 = compileSite(site("reference")).find((a) => a.host === "hv3")!;
    const uplink = hv3.resources.find((r) => r.name === "br-uplink");
    expect(uplink).toMatchObject({ ports: [{ name: "bond0", type: "bond", members: ["eno1", "eno2"], trunks: [1081, 1082, 1083] }, { name: "pu-secure", tag: 1081, peer: "pb-secure" }, { name: "pu-service", tag: 1082 }, { name: "pu-datain", tag: 1083 }] });
    expect(hv3.resources.some((r) => r.kind === "kernel-bond")).toBe(false);
  });

  it("ovs-trunk carries the uplink MTU (hv3: 9000) to the bond members, and to each VM bridge's own port behind its patch port", () => {
    const hv3 = compileSite(site("reference")).find((a) => a.host === "hv3")!;
    const uplink = hv3.resources.find((r) => r.name === "br-uplink");
    expect(uplink?.kind === "ovs-bridge" && uplink.ports[0]).toMatchObject({ name: "bond0", type: "bond", mtu: 9000 });
    // patch ports have no MTU: frames of any size cross them
    expect(uplink?.kind === "ovs-bridge" && uplink.ports.filter((p) => p.type === "patch").every((p) => p.mtu === undefined)).toBe(true);
    for (const br of ["br-secure", "br-service", "br-datain"]) expect(hv3.resources.find((r) => r.name === br), br).toMatchObject({ kind: "ovs-bridge", mtu: 9000 });
    // kernel mode: the MTU is on bond0 and bond0.<vid>; OVS bridges follow them
    const hv1 = compileSite(site("reference")).find((a) => a.host === "hv1")!;
    expect(hv1.resources.find((r) => r.name === "br-secure")).not.toHaveProperty("mtu");
    expect(hv1.resources.find((r) => r.kind === "kernel-bond")).toMatchObject({ mtu: 9000 });
  });

  it("an ovs-trunk backend puts the uplink MTU on its internal gateway ports", () => {
    const lab = site("lab");
    const backend = compileSite(lab).find((a) => a.role === "backend")!;
    const uplink = backend.resources.find((r) => r.kind === "ovs-bridge");
    expect(uplink?.kind === "ovs-bridge" && uplink.ports.filter((p) => p.type === "internal").map((p) => p.mtu)).toEqual(
      lab.networks.map(() => lab.hosts.find((h) => h.role === "backend")!.uplink.mtu),
    );
  });

  it("prune: the backend keeps a dnsmasq per network and the table; a VM host keeps neither", () => {
    const all = compileSite(site("reference"));
    const keep = (host: string) => all.find((a) => a.host === host)!.resources.find((r) => r.kind === "prune");
    expect(keep("backend")).toMatchObject({ keep: { dnsmasq: ["secure", "service", "datain"], nftTable: true, libvirtNetworks: [] } });
    for (const h of ["hv1", "hv3"]) expect(keep(h), h).toMatchObject({ keep: { dnsmasq: [], nftTable: false } });
  });

  it("the assignment decodes back with its hash, and a tampered one is refused", () => {
    const a = compileSite(site("lab"))[0]!;
    expect(decodeAssignment("test", JSON.stringify(a))).toEqual(a);
    const tampered = { ...a, resources: a.resources.slice(1) };
    expect(() => decodeAssignment("kv:lab.backend", JSON.stringify(tampered))).toThrow("kv:lab.backend: hash: content hash does not match the document");
  });
});
