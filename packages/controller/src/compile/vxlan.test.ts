import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeAssignment, loadInventory, type ResourceSpec } from "@netfleet/shared";
import { compileSite, gatewayMac } from "./compile.ts";
import { vxlanMacs } from "./vxlan.ts";

const root = join(import.meta.dirname, "..", "..", "..", "..");
/** The lab site with every host in uplink mode vxlan (the lab tier's test/lab/vxlan.test.ts builds it). */
const inv = loadInventory(join(root, "test", "lab", "sites", "vxlan"));
const assignments = compileSite(inv);
const of = (host: string) => assignments.find((a) => a.host === host)!.resources;
const kinds = (rs: ResourceSpec[], kind: ResourceSpec["kind"]) => rs.filter((r) => r.kind === kind);

describe("compile, uplink mode vxlan", () => {
  it("loads with each network's VNI (vni, else the vlan id) and its MTU 50 bytes under the underlay's (RFC 7348)", () => {
    expect(inv.networks.map((n) => [n.name, n.vlan, n.vni, n.mtu])).toEqual([
      ["datain", 1083, 1083, 1450],
      ["secure", 1081, 5081, 1450],
      ["service", 1082, 1082, 1450],
    ]);
  });

  it("a VM host gets one vxlan device per network, flooding to every other host carrying it, as its bridge's uplink port", () => {
    const rs = of("hosta");
    expect(kinds(rs, "vxlan-interface").map((r) => ({ ...r, macs: undefined }))).toEqual([
      { kind: "vxlan-interface", name: "vx-secure", vni: 5081, local: "10.99.0.1", port: 4789, remotes: ["10.99.0.2", "10.99.0.3"], mtu: 1450 },
      { kind: "vxlan-interface", name: "vx-service", vni: 1082, local: "10.99.0.1", port: 4789, remotes: ["10.99.0.2", "10.99.0.3"], mtu: 1450 },
      { kind: "vxlan-interface", name: "vx-datain", vni: 1083, local: "10.99.0.1", port: 4789, remotes: ["10.99.0.2", "10.99.0.3"], mtu: 1450 },
    ]);
    // learning is off (agent): unicast to each VM on another host goes to that host by a static entry
    expect((kinds(rs, "vxlan-interface")[0] as { macs?: unknown[] }).macs).toEqual(expect.arrayContaining([
      { mac: "52:54:00:81:0b:01", dst: "10.99.0.2" },
      { mac: "52:54:00:81:0b:02", dst: "10.99.0.2" },
      { mac: "52:54:00:81:0b:04", dst: "10.99.0.2" },
    ]));
    expect(kinds(rs, "ovs-bridge")).toContainEqual({ kind: "ovs-bridge", name: "br-secure", datapath: "netdev", ports: [{ name: "vx-secure", type: "system" }], failMode: "secure" });
    expect(kinds(rs, "vm-port-policy").map((r) => [r.name, (r as { uplinkPort: string }).uplinkPort])).toEqual([
      ["br-secure", "vx-secure"],
      ["br-service", "vx-service"],
      ["br-datain", "vx-datain"],
    ]);
    // devices before the bridges that plug them; no bond, no VLAN interface, no trunk bridge
    expect(rs.findIndex((r) => r.kind === "vxlan-interface")).toBeLessThan(rs.findIndex((r) => r.kind === "ovs-bridge"));
    expect(rs.filter((r) => ["kernel-bond", "vlan-interface"].includes(r.kind) || r.name === "br-uplink")).toEqual([]);
    expect(rs.find((r) => r.kind === "prune")).toMatchObject({ keep: { links: ["vx-secure", "vx-service", "vx-datain"], ovsBridges: ["br-secure", "br-service", "br-datain"] } });
  });

  it("the backend holds each gateway address on the network's vxlan device; DHCP, DNS and the firewall use it", () => {
    const rs = of("backend");
    expect(kinds(rs, "vxlan-interface").map((r) => [r.name, (r as { remotes: string[] }).remotes])).toEqual([
      ["vx-secure", ["10.99.0.1", "10.99.0.2"]],
      ["vx-service", ["10.99.0.1", "10.99.0.2"]],
      ["vx-datain", ["10.99.0.1", "10.99.0.2"]],
    ]);
    expect(kinds(rs, "interface-address").map((r) => r.name)).toEqual(["vx-secure", "vx-service", "vx-datain"]);
    expect(kinds(rs, "dnsmasq").map((r) => [r.name, (r as { interface: string; mtu: number }).interface, (r as { mtu: number }).mtu])).toEqual([
      ["secure", "vx-secure", 1450],
      ["service", "vx-service", 1450],
      ["datain", "vx-datain", 1450],
    ]);
    expect(JSON.stringify(kinds(rs, "nft-table"))).toContain('"vx-secure"');
    expect(kinds(rs, "ovs-bridge")).toEqual([]);
  });

  it("static unicast entries: each VM on another host to its underlay address, and on a VM host the gateway's MAC to the backend's; none for the host's own VMs", () => {
    const host = (n: string) => inv.hosts.find((h) => h.name === n)!;
    const net = (n: string) => inv.networks.find((x) => x.name === n)!;
    expect(vxlanMacs(inv, host("hosta"), net("secure"), (n) => gatewayMac(n.vlan))).toEqual([
      { mac: "02:4e:46:00:04:39", dst: "10.99.0.3" },
      { mac: "52:54:00:81:0b:01", dst: "10.99.0.2" },
      { mac: "52:54:00:81:0b:02", dst: "10.99.0.2" },
      { mac: "52:54:00:81:0b:04", dst: "10.99.0.2" },
    ]);
    expect(vxlanMacs(inv, host("hosta"), net("service"))).toEqual([]);
    expect(vxlanMacs(inv, host("backend"), net("service"), (n) => gatewayMac(n.vlan))).toEqual([{ mac: "52:54:00:82:0a:02", dst: "10.99.0.1" }]);
    expect(vxlanMacs(inv, host("backend"), net("secure"), (n) => gatewayMac(n.vlan)).map((e) => e.dst)).toEqual(["10.99.0.1", "10.99.0.1", "10.99.0.1", "10.99.0.2", "10.99.0.2", "10.99.0.2"]);
  });

  it("every assignment decodes as the agent reads it", () => {
    for (const a of assignments) expect(decodeAssignment(`${a.host}.json`, JSON.stringify(a)).resources).toEqual(a.resources);
  });
});
