import { describe, expect, it } from "vitest";
import { ParseError, type KernelBondSpec, type VlanInterfaceSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { interfaceAddress, kernelBond, parseAddresses, parseLinks, vlanInterface } from "./ip-link.ts";

const links = (name: string) => ({ links: parseLinks(fixture(`ip/${name}-link.json`)) });
const bond: KernelBondSpec = { kind: "kernel-bond", name: "bond0", mode: "active-backup", members: ["eth0", "eth1"], miimon: 100, mtu: 9000 };
const vlan = (vid: number): VlanInterfaceSpec => ({ kind: "vlan-interface", name: `bond0.${vid}`, parent: "bond0", vlan: vid, mtu: 9000 });

describe("ip link parsing (real kernel output)", () => {
  it("reads bonds, members, VLANs and owner aliases", () => {
    const l = parseLinks(fixture("ip/vmhost-converged-link.json"));
    expect(l.get("bond0")).toMatchObject({ kind: "bond", bond: { mode: "active-backup", miimon: 100 }, mtu: 9000, up: true, alias: "netfleet-owner=fixture" });
    expect(l.get("eth0")?.master).toBe("bond0");
    expect(l.get("bond0.1081")).toMatchObject({ kind: "vlan", parent: "bond0", vlan: { id: 1081, protocol: "802.1Q" } });
    expect(l.get("eth9.50")?.alias).toBeUndefined();
    // veths carry `link` (their peer) too; only VLANs get a parent.
    expect(l.get("peer0")?.parent).toBeUndefined();
  });

  it("reads global IPv4 addresses only", () => {
    const a = parseAddresses(fixture("ip/backend-converged-addr.json"));
    expect(a.get("bond0.1081")).toEqual(["192.168.128.1/17"]);
    expect(a.get("eth0")).toEqual([]);
  });

  it("rejects output it does not understand, naming the tool", () => {
    expect(() => parseLinks("not json")).toThrow(ParseError);
    expect(() => parseLinks('[{"ifname": 3}]')).toThrow(/ip -details -json link show: 0.ifname/);
  });
});

describe("kernel-bond plan", () => {
  it("creates the bond with members taken down first (the kernel refuses to enslave a running NIC)", () => {
    const plan = kernelBond.plan(bond, links("empty"), ctx);
    expect(plan.commands).toHaveLength(1);
    expect(plan.commands[0]!.argv).toEqual(["ip", "-batch", "-"]);
    expect(plan.commands[0]!.stdin).toBe(
      [
        "link add bond0 type bond mode active-backup miimon 100",
        "link set dev bond0 alias netfleet-owner=fixture",
        "link set dev bond0 mtu 9000",
        "link set dev eth0 down",
        "link set dev eth0 master bond0",
        "link set dev eth0 up",
        "link set dev eth1 down",
        "link set dev eth1 master bond0",
        "link set dev eth1 up",
        "link set dev bond0 up",
        "",
      ].join("\n"),
    );
    expect(plan.changes).toEqual({ present: { old: false, new: true } });
  });

  it("already converged → no commands", () => {
    expect(kernelBond.plan(bond, links("vmhost-converged"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("changes the mode by releasing the members first, as the kernel requires", () => {
    const plan = kernelBond.plan(bond, links("vmhost-drift"), ctx);
    expect(Object.keys(plan.changes).sort()).toEqual(["members", "mode", "mtu"]);
    expect(plan.commands[0]!.stdin!.split("\n").slice(0, 5)).toEqual([
      "link set dev bond0 down",
      "link set dev eth0 nomaster",
      "link set dev bond0 type bond mode active-backup",
      "link set dev bond0 mtu 9000",
      "link set dev eth0 down",
    ]);
    expect(plan.commands[0]!.stdin!.trim().split("\n").at(-1)).toBe("link set dev bond0 up");
  });

  it("adds a missing member without touching the rest", () => {
    const plan = kernelBond.plan({ ...bond, mode: "802.3ad", mtu: 1500 }, links("vmhost-drift"), ctx);
    expect(plan.changes).toEqual({ members: { old: ["eth0"], new: ["eth0", "eth1"] } });
    expect(plan.commands[0]!.stdin).toBe("link set dev eth1 down\nlink set dev eth1 master bond0\nlink set dev eth1 up\n");
  });

  it("refuses to change a bond it did not create, and says how to hand it over", () => {
    const plan = kernelBond.plan(bond, links("vmhost-drift"), { ...ctx, owner: "other" });
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toMatch(/not managed by netfleet.*ip link set dev bond0 alias netfleet-owner=other/);
  });

  it("leaves a foreign bond alone when it already matches", () => {
    const plan = kernelBond.plan(bond, links("vmhost-converged"), { ...ctx, owner: "other" });
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toBeUndefined();
    expect(plan.comment).toMatch(/not marked as ours/);
  });

  it("is blocked when a member NIC does not exist", () => {
    const plan = kernelBond.plan({ ...bond, members: ["eth0", "eno9"] }, links("empty"), ctx);
    expect(plan.blocked).toBe("bond member(s) eno9 do not exist on this host");
    expect(plan.commands).toEqual([]);
  });
});

describe("vlan-interface plan", () => {
  it("creates a VLAN subinterface", () => {
    const plan = vlanInterface.plan(vlan(1082), links("vmhost-drift"), ctx);
    expect(plan.commands[0]!.stdin).toBe(
      "link add link bond0 name bond0.1082 type vlan id 1082\nlink set dev bond0.1082 alias netfleet-owner=fixture\nlink set dev bond0.1082 mtu 9000\nlink set dev bond0.1082 up\n",
    );
  });

  it("already converged → no commands", () => {
    for (const vid of [1081, 1082, 1083]) expect(vlanInterface.plan(vlan(vid), links("vmhost-converged"), ctx).commands).toEqual([]);
  });

  it("fixes the MTU in place", () => {
    const plan = vlanInterface.plan(vlan(1081), links("vmhost-drift"), ctx);
    expect(plan.changes).toEqual({ mtu: { old: 1500, new: 9000 } });
    expect(plan.commands.map((c) => c.argv)).toEqual([["ip", "link", "set", "dev", "bond0.1081", "mtu", "9000"]]);
  });

  it("recreates an owned interface whose VLAN id is wrong", () => {
    const plan = vlanInterface.plan({ ...vlan(1081), vlan: 1090 }, links("vmhost-converged"), ctx);
    expect(plan.commands[0]!.stdin!.split("\n")[0]).toBe("link del dev bond0.1081");
  });

  it("never touches a VLAN it did not create", () => {
    const plan = vlanInterface.plan({ kind: "vlan-interface", name: "eth9.50", parent: "eth9", vlan: 51, mtu: 1500 }, links("vmhost-converged"), ctx);
    expect(plan.blocked).toMatch(/VLAN interface eth9.50 exists and is not managed by netfleet/);
  });
});

describe("interface-address plan", () => {
  const observed = (name: string) => ({ links: parseLinks(fixture(`ip/${name}-link.json`)), addresses: parseAddresses(fixture(`ip/${name}-addr.json`)) });

  it("already converged → no commands", () => {
    const plan = interfaceAddress.plan({ kind: "interface-address", name: "bond0.1081", addresses: ["192.168.128.1/17"] }, observed("backend-converged"), ctx);
    expect(plan).toEqual({ changes: {}, commands: [] });
  });

  it("adds the gateway address and sets the gateway MAC", () => {
    const plan = interfaceAddress.plan(
      { kind: "interface-address", name: "bond0.1081", addresses: ["192.168.128.1/17"], mac: "02:4e:46:00:04:39" },
      observed("vmhost-converged"),
      ctx,
    );
    expect(plan.commands[0]!.stdin).toBe("link set dev bond0.1081 address 02:4e:46:00:04:39\naddr add 192.168.128.1/17 dev bond0.1081\n");
  });

  it("replaces a stale address", () => {
    const plan = interfaceAddress.plan({ kind: "interface-address", name: "bond0.1082", addresses: ["192.168.122.254/24"] }, observed("backend-converged"), ctx);
    expect(plan.commands[0]!.stdin).toBe("addr del 192.168.122.1/24 dev bond0.1082\naddr add 192.168.122.254/24 dev bond0.1082\n");
  });
});
