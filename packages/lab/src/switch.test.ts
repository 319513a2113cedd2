import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadInventory, UplinkSpec } from "@netfleet/shared";
import { parseBondShow, parseLacpShow, switchArgs, switchLagPort } from "./switch.ts";
import { buildTopology, switchLagOf } from "./topology.ts";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
/** Real `ovs-appctl` text of OVS 3.1 (packages/agent/src/resources/__fixtures__/ovs/capture-lacp.sh). */
const appctl = (name: string) => readFileSync(`${repoRoot}packages/agent/src/resources/__fixtures__/ovs/appctl-${name}.txt`, "utf8");
const topo = (dir: string, prefix: string) => buildTopology(loadInventory(`${repoRoot}${dir}`), { inventoryDir: `${repoRoot}${dir}`, prefix, runDir: `/run/netfleet-lab/${prefix}`, repoRoot });

describe("lab switch", () => {
  it("the lab inventory (active-backup bonds): plain trunk ports, exactly as before LAGs existed", () => {
    const t = topo("inventories/lab", "nf");
    expect(t.hosts.map((h) => h.switchLag)).toEqual([undefined, undefined, undefined]);
    const args = switchArgs(t).join(" ");
    expect(args).toBe(
      "--may-exist add-br sw0 -- set Bridge sw0 datapath_type=netdev" +
        ["h0-e0", "h0-e1", "h1-e0", "h1-e1", "h2-e0", "h2-e1"].map((p) => ` -- --may-exist add-port sw0 ${p} -- set Port ${p} trunks=1081,1082,1083`).join(""),
    );
    expect(args).not.toMatch(/lacp|add-bond/);
  });

  it("hosts whose uplink runs LACP (explicit, or balance-tcp's default) face one LAG: a bond of their switch ports with LACP active", () => {
    const t = topo("test/lab/sites/lacp", "nfl");
    expect(t.hosts.map((h) => [h.name, switchLagPort(h)])).toEqual([
      ["backend", "h0-lag"],
      ["hostl", "h1-lag"],
    ]);
    expect(switchArgs(t).slice(8).join(" ")).toBe(
      "-- --may-exist add-bond sw0 h0-lag h0-e0 h0-e1 -- set Port h0-lag trunks=1091 bond_mode=balance-tcp lacp=active other_config:lacp-time=fast" +
        " -- --may-exist add-bond sw0 h1-lag h1-e0 h1-e1 -- set Port h1-lag trunks=1091 bond_mode=balance-tcp lacp=active other_config:lacp-time=fast",
    );
  });
});

describe("which hosts the switch faces with a LAG", () => {
  const lag = (uplink: Record<string, unknown>) => switchLagOf({ uplink: UplinkSpec.parse(uplink) }, 3)?.port;
  it("a bond that runs LACP: kernel 802.3ad (even a one-member bond), OVS balance-tcp, any bond told lacp active or passive", () => {
    expect(lag({ mode: "kernel", members: ["eno1", "eno2"], bond_mode: "802.3ad" })).toBe("h3-lag");
    expect(lag({ mode: "kernel", members: ["eno1"], bond_mode: "802.3ad" })).toBe("h3-lag");
    expect(lag({ mode: "ovs-trunk", members: ["eno1", "eno2"], bond_mode: "balance-tcp" })).toBe("h3-lag");
    expect(lag({ mode: "ovs-trunk", members: ["eno1", "eno2"], bond_mode: "balance-tcp", lacp: "passive" })).toBe("h3-lag");
    expect(lag({ mode: "ovs-trunk", members: ["eno1", "eno2"], bond_mode: "balance-slb", lacp: "active" })).toBe("h3-lag");
  });
  it("no LAG without LACP, or where the host has no bond (an ovs-trunk uplink of one member is a plain port)", () => {
    expect(lag({ mode: "kernel", members: ["eno1", "eno2"], bond_mode: "active-backup" })).toBeUndefined();
    expect(lag({ mode: "kernel", members: ["eno1", "eno2"], bond_mode: "802.3ad", lacp: "off" })).toBeUndefined();
    expect(lag({ mode: "ovs-trunk", members: ["eno1", "eno2"], bond_mode: "active-backup" })).toBeUndefined();
    expect(lag({ mode: "ovs-trunk", members: ["eno1"], bond_mode: "balance-tcp", lacp: "active" })).toBeUndefined();
  });
});

describe("ovs-appctl bond/show and lacp/show (real OVS 3.1 text)", () => {
  it("negotiated: both members enabled and current, the partner heard", () => {
    expect(parseBondShow(appctl("bond-show-negotiated"))).toEqual({
      bond: "bond0",
      mode: "balance-tcp",
      lacpStatus: "negotiated",
      members: [
        { name: "eth0", enabled: true, mayEnable: true },
        { name: "eth1", enabled: true, mayEnable: true },
      ],
    });
    const l = parseLacpShow(appctl("lacp-show-negotiated"));
    expect(l.status).toEqual(["active", "negotiated"]);
    expect(l.members.map((m) => [m.name, m.status.join(" "), m.actorState.includes("distributing"), m.partnerState.includes("synchronized")])).toEqual([
      ["eth0", "current attached", true, true],
      ["eth1", "current attached", true, true],
    ]);
    expect(l.members[0]!.partnerSysId).not.toBe("00:00:00:00:00:00");
  });

  it("one member's link down: that member disabled, the other still enabled, still negotiated", () => {
    const b = parseBondShow(appctl("bond-show-member-down"));
    expect(b.lacpStatus).toBe("negotiated");
    expect(b.members.map((m) => [m.name, m.enabled])).toEqual([["eth0", true], ["eth1", false]]);
  });

  it("the switch insists on LACP, the host runs none: configured, every member disabled, no partner", () => {
    const b = parseBondShow(appctl("switch-bond-show-off"));
    expect(b).toMatchObject({ bond: "sw-bond", lacpStatus: "configured" });
    expect(b.members.map((m) => m.enabled)).toEqual([false, false]);
    const l = parseLacpShow(appctl("switch-lacp-show-off"));
    expect(l.status).toEqual(["active"]);
    expect(l.members.map((m) => [m.status.join(" "), m.partnerSysId])).toEqual([
      ["defaulted detached", "00:00:00:00:00:00"],
      ["defaulted detached", "00:00:00:00:00:00"],
    ]);
    expect(parseBondShow(appctl("bond-show-off")).lacpStatus).toBe("off");
  });

  it("refuses text that is not bond/show or lacp/show output", () => {
    expect(() => parseBondShow("no such bond\n")).toThrow(/not ovs-appctl bond\/show output/);
    expect(() => parseLacpShow("no such lacp object\n")).toThrow(/not ovs-appctl lacp\/show output/);
  });
});
