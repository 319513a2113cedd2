import { describe, expect, it } from "vitest";
import { OvsPortSpec, ParseError, type OvsBridgeSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { ovsBridge } from "./ovs.ts";
import { parseOvsState } from "./ovsdb.ts";

const state = (name: string) => parseOvsState(fixture(`ovs/${name}.json`));
const kernelBridge = (net: string, vid: number): OvsBridgeSpec => ({
  kind: "ovs-bridge",
  name: `br-${net}`,
  datapath: "netdev",
  ports: [{ name: `bond0.${vid}`, type: "system" }],
});
const uplinkPorts: OvsPortSpec[] = [
  { name: "bond0", type: "bond", members: ["eth0", "eth1"], bond_mode: "active-backup", trunks: [1081, 1082, 1083] },
  { name: "pu-secure", type: "patch", tag: 1081, peer: "pb-secure" },
  { name: "pu-service", type: "patch", tag: 1082, peer: "pb-service" },
];
const uplink: OvsBridgeSpec = { kind: "ovs-bridge", name: "br-uplink", datapath: "netdev", ports: uplinkPorts };

describe("ovs-vsctl JSON parsing (real OVS 3.1 output)", () => {
  it("reads bridges, ports, interfaces and external_ids", () => {
    const s = state("kernel-converged");
    expect([...s.bridges.keys()].sort()).toEqual(["br-mgmt", "br-secure", "br-service"]);
    expect(s.bridges.get("br-secure")).toMatchObject({ datapath: "netdev", externalIds: { "netfleet-owner": "fixture" } });
    expect(s.ports.get("bond0.1081")).toMatchObject({ bridge: "br-secure", externalIds: { "netfleet-owner": "fixture" } });
    // libvirt marks the Interface row, not the Port row.
    expect(s.interfaces.get("vnet0")?.externalIds["attached-mac"]).toBe("52:54:00:aa:00:01");
  });

  it("reads OVS bonds, trunks, tags and patch peers; a one-element set prints bare", () => {
    const s = state("trunk-converged");
    expect(s.ports.get("bond0")).toMatchObject({ bondMode: "active-backup", trunks: [1081, 1082, 1083], bridge: "br-uplink" });
    expect(s.ports.get("pu-secure")?.tag).toBe(1081);
    expect(s.interfaces.get("pb-secure")).toMatchObject({ type: "patch", options: { peer: "pu-secure" } });
    expect(s.bridges.get("br-secure")?.portUuids).toHaveLength(2);
  });

  it("rejects truncated output", () => {
    const text = fixture("ovs/empty.json").split("\n").slice(0, 2).join("\n");
    expect(() => parseOvsState(text)).toThrow(ParseError);
    expect(() => parseOvsState("{oops")).toThrow(/ovs-vsctl: line 1 is not an OVSDB table/);
  });
});

describe("ovs-bridge plan", () => {
  it("builds a bridge and its port in one marked transaction", () => {
    const plan = ovsBridge.plan(kernelBridge("secure", 1081), state("empty"), ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([
      [
        "ovs-vsctl", "--timeout=30",
        "--", "add-br", "br-secure", "--", "set", "Bridge", "br-secure", "datapath_type=netdev", "external_ids:netfleet-owner=fixture",
        "--", "add-port", "br-secure", "bond0.1081", "--", "set", "Port", "bond0.1081", "external_ids:netfleet-owner=fixture",
      ],
    ]);
  });

  it("absent (netfleet plan): the first apply is the plan on a real empty OVS database", () => {
    for (const spec of [kernelBridge("secure", 1081), uplink]) {
      const plan = ovsBridge.plan(spec, ovsBridge.absent(spec), ctx);
      expect(plan).toEqual(ovsBridge.plan(spec, state("empty"), ctx));
      expect(plan.commands).toHaveLength(1);
    }
  });

  it("already converged → no commands, and libvirt's vnet0 and the bridge's local port are left alone", () => {
    expect(ovsBridge.plan(kernelBridge("secure", 1081), state("kernel-converged"), ctx)).toEqual({ changes: {}, commands: [] });
    expect(ovsBridge.plan(kernelBridge("service", 1082), state("kernel-converged"), ctx).commands).toEqual([]);
    expect(ovsBridge.plan(kernelBridge("secure", 1081), state("with-domain"), ctx).commands).toEqual([]);
  });

  it("adds the missing port and removes our stale one in a single transaction", () => {
    const plan = ovsBridge.plan(kernelBridge("secure", 1081), state("kernel-drift"), ctx);
    expect(plan.commands).toHaveLength(1);
    const argv = plan.commands[0]!.argv.join(" ");
    expect(argv).toContain("-- add-port br-secure bond0.1081 -- set Port bond0.1081 external_ids:netfleet-owner=fixture");
    expect(argv).toContain("-- del-port br-secure bond0.1099");
    expect(argv).not.toContain("vnet0");
  });

  it("refuses a bridge it did not create", () => {
    const plan = ovsBridge.plan({ kind: "ovs-bridge", name: "br-mgmt", datapath: "netdev", ports: [] }, state("kernel-converged"), ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toMatch(/bridge br-mgmt exists and is not managed by netfleet.*external_ids:netfleet-owner=fixture/);
  });

  it("ovs-trunk uplink: converged bond, trunks and tagged patch ports → no commands", () => {
    expect(ovsBridge.plan(uplink, state("trunk-converged"), ctx).commands).toEqual([]);
    const secure: OvsBridgeSpec = { kind: "ovs-bridge", name: "br-secure", datapath: "netdev", ports: [{ name: "pb-secure", type: "patch", peer: "pu-secure" }] };
    expect(ovsBridge.plan(secure, state("trunk-converged"), ctx).commands).toEqual([]);
  });

  it("ovs-trunk uplink from empty: add-bond with mode and trunks, patch ports with tags", () => {
    const argv = ovsBridge.plan(uplink, state("empty"), ctx).commands[0]!.argv.join(" ");
    expect(argv).toContain("-- add-bond br-uplink bond0 eth0 eth1 -- set Port bond0 trunks=1081,1082,1083 bond_mode=active-backup external_ids:netfleet-owner=fixture");
    expect(argv).toContain("-- add-port br-uplink pu-secure -- set Port pu-secure tag=1081 external_ids:netfleet-owner=fixture -- set Interface pu-secure type=patch options:peer=pb-secure");
  });

  it("retags a port and changes trunks in place", () => {
    const spec: OvsBridgeSpec = {
      ...uplink,
      ports: [{ ...uplinkPorts[0]!, trunks: [1081, 1082] }, { ...uplinkPorts[1]!, tag: 1091 }, uplinkPorts[2]!],
    };
    const plan = ovsBridge.plan(spec, state("trunk-converged"), ctx);
    expect(plan.changes).toEqual({
      "port bond0 trunks": { old: [1081, 1082, 1083], new: [1081, 1082] },
      "port pu-secure tag": { old: 1081, new: 1091 },
    });
    expect(plan.commands[0]!.argv.slice(2)).toEqual(["--", "set", "Port", "bond0", "trunks=1081,1082", "--", "set", "Port", "pu-secure", "tag=1091"]);
  });

  it("rebuilds a bond whose members changed", () => {
    const spec: OvsBridgeSpec = { ...uplink, ports: [{ ...uplinkPorts[0]!, members: ["eth0", "eth2"] }, uplinkPorts[1]!, uplinkPorts[2]!] };
    const argv = ovsBridge.plan(spec, state("trunk-converged"), ctx).commands[0]!.argv.join(" ");
    expect(argv).toContain("-- --if-exists del-port bond0 -- add-bond br-uplink bond0 eth0 eth2");
  });

  it("backend gateway port: a tagged internal port → no commands when converged", () => {
    const spec: OvsBridgeSpec = { ...uplink, ports: [...uplinkPorts, { name: "gw-secure", type: "internal", tag: 1081 }] };
    expect(ovsBridge.plan(spec, state("trunk-backend-converged"), ctx).commands).toEqual([]);
    const fromEmpty = ovsBridge.plan({ ...spec, ports: [{ name: "gw-secure", type: "internal", tag: 1081, mac: "02:4e:46:00:04:39" }] }, state("empty"), ctx);
    expect(fromEmpty.commands[0]!.argv.join(" ")).toContain('-- set Interface gw-secure type=internal mac="02:4e:46:00:04:39"');
  });
});

describe("ovs-trunk MTU (real OVS 3.1 output with mtu_request and mtu, __fixtures__/ovs/capture-mtu.sh)", () => {
  const jumboPorts: OvsPortSpec[] = [
    { name: "bond0", type: "bond", members: ["eth0", "eth1"], bond_mode: "active-backup", trunks: [1081, 1082], mtu: 9000 },
    { name: "pu-secure", type: "patch", tag: 1081, peer: "pb-secure" },
    { name: "gw-secure", type: "internal", tag: 1081, mac: "02:4e:46:00:04:39", mtu: 9000 },
  ];
  const jumboUplink: OvsBridgeSpec = { kind: "ovs-bridge", name: "br-uplink", datapath: "netdev", ports: jumboPorts };
  const jumboSecure: OvsBridgeSpec = { kind: "ovs-bridge", name: "br-secure", datapath: "netdev", ports: [{ name: "pb-secure", type: "patch", peer: "pu-secure" }], mtu: 9000 };

  it("reads mtu_request and the device MTU; a patch port has neither", () => {
    const before = state("trunk-mtu-1500");
    expect(before.interfaces.get("eth0")).toMatchObject({ mtu: 1500 });
    expect(before.interfaces.get("eth0")?.mtuRequest).toBeUndefined();
    const after = state("trunk-mtu-9000");
    for (const name of ["eth0", "eth1", "gw-secure", "br-secure"]) expect(after.interfaces.get(name), name).toMatchObject({ mtuRequest: 9000, mtu: 9000 });
    // br-uplink was not asked: OVS sized it to its bond members
    expect(after.interfaces.get("br-uplink")).toMatchObject({ mtu: 9000 });
    expect(after.interfaces.get("br-uplink")?.mtuRequest).toBeUndefined();
    expect(after.interfaces.get("pb-secure")?.mtu).toBeUndefined();
  });

  it("already converged → no commands", () => {
    expect(ovsBridge.plan(jumboUplink, state("trunk-mtu-9000"), ctx)).toEqual({ changes: {}, commands: [] });
    expect(ovsBridge.plan(jumboSecure, state("trunk-mtu-9000"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("sets mtu_request on the bond members, the gateway port and the VM bridge's own port, in place", () => {
    const uplinkPlan = ovsBridge.plan(jumboUplink, state("trunk-mtu-1500"), ctx);
    expect(uplinkPlan.changes).toEqual({
      "port bond0 mtu": { old: { eth0: null, eth1: null }, new: 9000 },
      "port gw-secure mtu": { old: { "gw-secure": null }, new: 9000 },
    });
    expect(uplinkPlan.commands.map((c) => c.argv.slice(2))).toEqual([
      ["--", "set", "Interface", "eth0", "mtu_request=9000", "--", "set", "Interface", "eth1", "mtu_request=9000", "--", "set", "Interface", "gw-secure", "mtu_request=9000"],
    ]);
    const securePlan = ovsBridge.plan(jumboSecure, state("trunk-mtu-1500"), ctx);
    expect(securePlan.changes).toEqual({ mtu: { old: null, new: 9000 } });
    expect(securePlan.commands.map((c) => c.argv.slice(2))).toEqual([["--", "set", "Interface", "br-secure", "mtu_request=9000"]]);
  });

  it("back to 1500 from jumbo frames", () => {
    const plan = ovsBridge.plan({ ...jumboSecure, mtu: 1500 }, state("trunk-mtu-9000"), ctx);
    expect(plan.commands.map((c) => c.argv.slice(2))).toEqual([["--", "set", "Interface", "br-secure", "mtu_request=1500"]]);
  });

  it("from empty: the bond, its members' MTU, the gateway port and the bridge's own port in the same transaction", () => {
    const argv = ovsBridge.plan(jumboUplink, state("empty"), ctx).commands[0]!.argv.join(" ");
    expect(argv).toContain("-- add-bond br-uplink bond0 eth0 eth1 -- set Port bond0 trunks=1081,1082 bond_mode=active-backup external_ids:netfleet-owner=fixture -- set Interface eth0 mtu_request=9000 -- set Interface eth1 mtu_request=9000");
    expect(argv).toContain('-- set Interface gw-secure type=internal mac="02:4e:46:00:04:39" mtu_request=9000');
    expect(argv).not.toMatch(/pu-secure[^-]*mtu_request/);
    const secure = ovsBridge.plan(jumboSecure, state("empty"), ctx).commands[0]!.argv.join(" ");
    expect(secure).toContain("-- add-br br-secure -- set Bridge br-secure datapath_type=netdev external_ids:netfleet-owner=fixture -- set Interface br-secure mtu_request=9000");
  });

  it("a device that keeps another MTU than asked: no command (asking again would not help), but a comment", () => {
    const s = state("trunk-mtu-9000");
    s.interfaces.set("eth1", { ...s.interfaces.get("eth1")!, mtu: 1500 });
    const plan = ovsBridge.plan(jumboUplink, s, ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.comment).toBe("in desired state, but not at the MTU asked: eth1 (MTU 1500, asked 9000)");
  });

  it("specs without an MTU (kernel uplinks) ignore the MTU columns", () => {
    expect(ovsBridge.plan({ ...jumboSecure, mtu: undefined } as OvsBridgeSpec, state("trunk-mtu-1500"), ctx).commands).toEqual([]);
  });

  it("a patch port cannot be given an MTU", () => {
    expect(OvsPortSpec.safeParse({ name: "pu-secure", type: "patch", peer: "pb-secure", mtu: 9000 }).success).toBe(false);
  });
});

describe("OVS bond LACP (real OVS 3.1 output with the Port lacp column, __fixtures__/ovs/capture-lacp.sh)", () => {
  const lacpPorts = (lacp: OvsPortSpec["lacp"]): OvsPortSpec[] => [
    { name: "bond0", type: "bond", members: ["eth0", "eth1"], bond_mode: "balance-tcp", trunks: [1081, 1082], ...(lacp ? { lacp } : {}) },
    { name: "gw-secure", type: "internal", tag: 1081, mac: "02:4e:46:00:04:39" },
  ];
  const lacpUplink = (lacp: OvsPortSpec["lacp"]): OvsBridgeSpec => ({ kind: "ovs-bridge", name: "br-uplink", datapath: "netdev", ports: lacpPorts(lacp) });

  it("reads the lacp column: an empty column is off, OVS's default; a capture without the column leaves it unknown", () => {
    expect(state("trunk-lacp-off").ports.get("bond0")).toMatchObject({ bondMode: "balance-tcp", lacp: "off", trunks: [1081, 1082] });
    expect(state("trunk-lacp-active").ports.get("bond0")?.lacp).toBe("active");
    expect(state("trunk-lacp-passive").ports.get("bond0")?.lacp).toBe("passive");
    expect(state("trunk-lacp-active").ports.get("gw-secure")?.lacp).toBe("off");
    expect(state("trunk-converged").ports.get("bond0")?.lacp).toBeUndefined();
    // the MTU captures (active-backup bond, recaptured with the column) read off: their converged plans stay empty above
    expect(state("trunk-mtu-1500").ports.get("bond0")).toMatchObject({ bondMode: "active-backup", lacp: "off" });
  });

  it("creates a balance-tcp bond with lacp=active in the transaction that adds it", () => {
    const argv = ovsBridge.plan(lacpUplink("active"), state("empty"), ctx).commands[0]!.argv.join(" ");
    expect(argv).toContain("-- add-bond br-uplink bond0 eth0 eth1 -- set Port bond0 trunks=1081,1082 bond_mode=balance-tcp lacp=active external_ids:netfleet-owner=fixture");
  });

  it("converged: no commands", () => {
    expect(ovsBridge.plan(lacpUplink("active"), state("trunk-lacp-active"), ctx)).toEqual({ changes: {}, commands: [] });
    expect(ovsBridge.plan(lacpUplink("passive"), state("trunk-lacp-passive"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("repairs lacp as drift, in place (the bond is not rebuilt)", () => {
    const fromOff = ovsBridge.plan(lacpUplink("active"), state("trunk-lacp-off"), ctx);
    expect(fromOff.changes).toEqual({ "port bond0 lacp": { old: "off", new: "active" } });
    expect(fromOff.commands.map((c) => c.argv.slice(2))).toEqual([["--", "set", "Port", "bond0", "lacp=active"]]);
    const toPassive = ovsBridge.plan(lacpUplink("passive"), state("trunk-lacp-active"), ctx);
    expect(toPassive.changes).toEqual({ "port bond0 lacp": { old: "active", new: "passive" } });
    expect(toPassive.commands.map((c) => c.argv.slice(2))).toEqual([["--", "set", "Port", "bond0", "lacp=passive"]]);
  });

  it("an active-backup bond without lacp clears a stray lacp=active; a capture without the column plans nothing for it", () => {
    const ab = (s: OvsBridgeSpec): OvsBridgeSpec => ({ ...s, ports: s.ports.map((p) => (p.type === "bond" ? { ...p, bond_mode: "active-backup" as const } : p)) });
    const plan = ovsBridge.plan(ab(lacpUplink(undefined)), state("trunk-lacp-active"), ctx);
    expect(plan.changes).toEqual({
      "port bond0 bond_mode": { old: "balance-tcp", new: "active-backup" },
      "port bond0 lacp": { old: "active", new: "off" },
    });
    expect(plan.commands.map((c) => c.argv.slice(2))).toEqual([["--", "clear", "Port", "bond0", "lacp", "--", "set", "Port", "bond0", "bond_mode=active-backup"]]);
    expect(ovsBridge.plan(uplink, state("trunk-converged"), ctx).commands).toEqual([]);
  });

  it("balance-tcp without LACP (absent or off) is blocked, naming the port, and nothing is run", () => {
    for (const lacp of [undefined, "off"] as const) {
      for (const s of ["empty", "trunk-lacp-off", "trunk-lacp-active"]) {
        const plan = ovsBridge.plan(lacpUplink(lacp), state(s), ctx);
        expect(plan.commands, `${lacp} on ${s}`).toEqual([]);
        expect(plan.changes).toEqual({});
        expect(plan.blocked).toMatch(/^port bond0: bond_mode balance-tcp needs LACP \(lacp: active or passive.*sends and admits no frame on the bond/);
      }
    }
    // the same bond with LACP, and other bond modes without it, are not blocked
    expect(ovsBridge.plan(lacpUplink("passive"), state("empty"), ctx).blocked).toBeUndefined();
    expect(ovsBridge.plan(uplink, state("empty"), ctx).blocked).toBeUndefined();
  });
});
