import { describe, expect, it } from "vitest";
import { ParseError, type InterfaceAddressSpec, type KernelBondSpec, type VlanInterfaceSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { parseAddresses, parseLinks, parseRoutes } from "./ip-json.ts";
import { interfaceAddress, kernelBond, vlanInterface } from "./ip-link.ts";

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
        "link add name bond0 type bond mode active-backup miimon 100",
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

  it("absent (netfleet plan): the first apply is the plan on a real empty host's links; with management.address there is nothing to move", () => {
    expect(kernelBond.plan(bond, kernelBond.absent(bond), ctx)).toEqual(kernelBond.plan(bond, links("empty"), ctx));
    const managed = { ...bond, management: { address: "10.98.0.11/24" } };
    expect(kernelBond.plan(managed, kernelBond.absent(managed), ctx)).toEqual(kernelBond.plan(bond, links("empty"), ctx));
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

describe("kernel-bond names, LACP and the management move (fixtures: __fixtures__/mgmt, Debian kernel 6.1)", () => {
  // The capture's bonds carry no owner alias: marked ours here, as the agent's own bonds are.
  const lacpLinks = (f: string) => {
    const l = parseLinks(fixture(`mgmt/${f}.json`));
    for (const b of ["bond1", "bond2"]) l.get(b)!.alias = "netfleet-owner=fixture";
    return { links: l };
  };
  const lacpBond = (name: string, lacpActive: boolean): KernelBondSpec => ({ kind: "kernel-bond", name, mode: "802.3ad", members: [name === "bond1" ? "d0" : "d1"], miimon: 100, mtu: 1500, lacpActive });

  it("a bond named like an iproute2 keyword is created with the name keyword (the bare form made a bond the kernel named bond0, up)", () => {
    const plan = kernelBond.plan({ ...bond, name: "up", members: ["eth0"] }, links("empty"), ctx);
    expect(plan.commands[0]!.stdin!.split("\n")[0]).toBe("link add name up type bond mode active-backup miimon 100");
    // What the two forms did on the real kernel: `ip link add up type bond` -> bond0 UP; `... name up ...` -> "up", down.
    const captured = parseLinks(fixture("mgmt/keyword-link.json"));
    expect(captured.get("bond0")).toMatchObject({ up: true });
    expect(captured.get("up")).toMatchObject({ up: false });
  });

  it("reads ad_lacp_active: off and on", () => {
    const l = parseLinks(fixture("mgmt/lacp-link.json"));
    expect(l.get("bond1")?.bond).toEqual({ mode: "802.3ad", miimon: 100, lacpActive: false });
    expect(l.get("bond2")?.bond).toEqual({ mode: "802.3ad", miimon: 100, lacpActive: true });
  });

  it("creates an 802.3ad bond with lacp_active as assigned; other modes never get it", () => {
    const off = kernelBond.plan({ ...bond, mode: "802.3ad", lacpActive: false }, links("empty"), ctx);
    expect(off.commands[0]!.stdin!.split("\n")[0]).toBe("link add name bond0 type bond mode 802.3ad miimon 100 lacp_active off");
    const on = kernelBond.plan({ ...bond, mode: "802.3ad", lacpActive: true }, links("empty"), ctx);
    expect(on.commands[0]!.stdin!.split("\n")[0]).toBe("link add name bond0 type bond mode 802.3ad miimon 100 lacp_active on");
    const ab = kernelBond.plan({ ...bond, lacpActive: false }, links("empty"), ctx);
    expect(ab.commands[0]!.stdin!.split("\n")[0]).toBe("link add name bond0 type bond mode active-backup miimon 100");
  });

  it("converged LACP → no commands; drift is repaired with the bond down (the kernel refuses it on a running bond)", () => {
    expect(kernelBond.plan(lacpBond("bond1", false), lacpLinks("lacp-link"), ctx).changes).not.toHaveProperty("lacpActive");
    const drift = kernelBond.plan(lacpBond("bond2", false), lacpLinks("lacp-link"), ctx);
    expect(drift.changes.lacpActive).toEqual({ old: true, new: false });
    expect(drift.commands[0]!.stdin!.split("\n").filter((l) => /bond2 (down|up|type)/.test(l))).toEqual([
      "link set dev bond2 down",
      "link set dev bond2 type bond lacp_active off",
      "link set dev bond2 up",
    ]);
  });

  it("a kernel that reports no lacp_active (before 5.15) is always active: active matches, passive is refused", () => {
    const old = lacpLinks("lacp-link");
    delete old.links.get("bond2")!.bond!.lacpActive;
    expect(kernelBond.plan(lacpBond("bond2", true), old, ctx).changes).not.toHaveProperty("lacpActive");
    expect(kernelBond.plan(lacpBond("bond2", false), old, ctx).blocked).toMatch(/reports no lacp_active for bond2 \(Linux 5\.15 or later has it\)/);
  });

  it("with management.address on eth0: one batch builds the bond and moves the address and routes (the batch the capture ran)", () => {
    const f = (n: string) => fixture(`mgmt/before-${n}.json`);
    const observed = { links: parseLinks(f("link")), addresses: parseAddresses(f("addr")), routes: parseRoutes(f("route")) };
    const plan = kernelBond.plan({ ...bond, mtu: 1500, management: { address: "10.98.0.11/24" } }, observed, ctx);
    expect(plan.changes).toEqual({ present: { old: false, new: true }, management: { old: "10.98.0.11/24 on eth0", new: "10.98.0.11/24 on bond0" } });
    expect(plan.commands[0]!.stdin).toBe(
      [
        "link add name bond0 type bond mode active-backup miimon 100",
        "link set dev bond0 alias netfleet-owner=fixture",
        "link set dev bond0 mtu 1500",
        "addr del 10.98.0.11/24 dev eth0",
        "link set dev eth0 down",
        "link set dev eth0 master bond0",
        "link set dev eth0 up",
        "link set dev eth1 down",
        "link set dev eth1 master bond0",
        "link set dev eth1 up",
        "link set dev bond0 up",
        "addr add 10.98.0.11/24 dev bond0",
        "route replace default via 10.98.0.254 dev bond0",
        "route replace 10.99.0.0/24 via 10.98.0.254 dev bond0 metric 50",
        "",
      ].join("\n"),
    );
    // After the move (captured), the same spec plans nothing.
    const m = (n: string) => fixture(`mgmt/moved-${n}.json`);
    const moved = { links: parseLinks(m("link")), addresses: parseAddresses(m("addr")), routes: parseRoutes(m("route")) };
    const again = kernelBond.plan({ ...bond, mtu: 1500, management: { address: "10.98.0.11/24" } }, moved, { ...ctx, owner: "fixture" });
    expect(again.commands).toEqual([]);
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

  it("absent (netfleet plan): the first apply is the plan on a real empty host's links", () => {
    const plan = vlanInterface.plan(vlan(1081), vlanInterface.absent(vlan(1081)), ctx);
    expect(plan).toEqual(vlanInterface.plan(vlan(1081), links("empty"), ctx));
    expect(plan.changes).toEqual({ present: { old: false, new: true } });
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

  it("absent (netfleet plan): the first apply is the plan on a real empty host's links and addresses", () => {
    const spec: InterfaceAddressSpec = { kind: "interface-address", name: "bond0.1081", addresses: ["192.168.128.1/17"], mac: "02:4e:46:00:04:39" };
    const plan = interfaceAddress.plan(spec, interfaceAddress.absent(spec), ctx);
    expect(plan).toEqual(interfaceAddress.plan(spec, observed("empty"), ctx));
    expect(plan.commands[0]!.stdin).toBe("link set dev bond0.1081 address 02:4e:46:00:04:39\naddr add 192.168.128.1/17 dev bond0.1081\nlink set dev bond0.1081 up\n");
  });

  it("replaces a stale address", () => {
    const plan = interfaceAddress.plan({ kind: "interface-address", name: "bond0.1082", addresses: ["192.168.122.254/24"] }, observed("backend-converged"), ctx);
    expect(plan.commands[0]!.stdin).toBe("addr del 192.168.122.1/24 dev bond0.1082\naddr add 192.168.122.254/24 dev bond0.1082\n");
  });
});
