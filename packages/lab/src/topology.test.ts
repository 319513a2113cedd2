import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadInventory } from "@netfleet/shared";
import { validateOptions } from "./paths.ts";
import { buildTopology, domainMac, strangerMac, vmPortName } from "./topology.ts";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const options = { inventoryDir: `${repoRoot}inventories/lab`, prefix: "nf", runDir: "/run/netfleet-lab/nf", repoRoot };

describe("lab topology", () => {
  it("names every part of the lab inventory after the prefix, backend first", () => {
    const t = buildTopology(loadInventory(options.inventoryDir), options);
    expect(t.hosts.map((h) => [h.name, h.namespace, h.trunkLinks.map((l) => `${l.hostIf}:${l.switchIf}`).join(" ")])).toEqual([
      ["backend", "nf-backend", "eth0:h0-e0 eth1:h0-e1"],
      ["hosta", "nf-hosta", "eth0:h1-e0 eth1:h1-e1"],
      ["hostb", "nf-hostb", "eth0:h2-e0 eth1:h2-e1"],
    ]);
    expect(t.hosts[1]!.ovs.db).toBe("/run/netfleet-lab/nf/hosts/hosta/ovs/db.sock");
    expect(t.hosts[1]!.libvirt!.uri).toBe("qemu:///system?socket=/run/netfleet-lab/nf/hosts/hosta/libvirt/run/libvirt/libvirt-sock");
    expect(t.hosts.map((h) => h.mgmtAddress)).toEqual(["10.99.0.3/24", "10.99.0.1/24", "10.99.0.2/24"]);
    expect(t.trunks).toEqual([1081, 1082, 1083]);
    expect(t.vms.map((v) => [v.name, v.namespace, v.hostNs, v.bridge, v.hostPort])).toContainEqual(["vma1", "nf-vma1", "nf-hosta", "br-secure", "v-vma1"]);
    expect(t.domains.map((d) => [d.name, d.network, d.portgroup, d.mac])).toEqual([
      ["dom-hosta", "secure", "isolated", domainMac(1)],
      ["dom-hostb", "secure", "isolated", domainMac(2)],
    ]);
    // one stranger per VM host: a namespace on br-secure whose MAC the inventory does not know
    expect(t.strangers.map((v) => [v.name, v.namespace, v.hostNs, v.bridge, v.hostPort, v.mac])).toEqual([
      ["x-hosta", "nf-x-hosta", "nf-hosta", "br-secure", "v-x-hosta", strangerMac(1)],
      ["x-hostb", "nf-x-hostb", "nf-hostb", "br-secure", "v-x-hostb", strangerMac(2)],
    ]);
    expect(t.namespaces).toContain("nf-x-hosta");
    expect(t.networks.find((n) => n.name === "secure")).toEqual({ name: "secure", vlan: 1081, cidr: "10.81.0.0/24", gateway: "10.81.0.1", bridge: "br-secure" });
    expect(t.namespaces.slice(0, 2)).toEqual(["nf-sw", "nf-inet"]);
    expect(buildTopology(loadInventory(options.inventoryDir), options).fingerprint).toBe(t.fingerprint);
  });

  it("keeps host-side port names within 15 bytes", () => {
    expect(vmPortName("vma1")).toBe("v-vma1");
    const long = vmPortName("a-very-long-virtual-machine-name");
    expect(long.length).toBeLessThanOrEqual(15);
    expect(long).not.toBe(vmPortName("a-very-long-virtual-machine-other"));
  });

  it("refuses unsafe options", () => {
    expect(() => validateOptions({ ...options, prefix: "NF" })).toThrow(/prefix/);
    expect(() => validateOptions({ ...options, prefix: "nf-x" })).toThrow(/prefix/);
    expect(() => validateOptions({ ...options, runDir: "relative/dir" })).toThrow(/runDir/);
    expect(() => validateOptions({ ...options, runDir: "/tmp" })).toThrow(/too close/);
    expect(() => validateOptions({ ...options, runDir: "/var/lib/lab" })).toThrow(/\/var\/lib/);
    expect(() => validateOptions({ ...options, runDir: "/tmp/a b" })).toThrow(/runDir/);
  });
});
