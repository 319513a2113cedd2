import { describe, expect, it } from "vitest";
import type { LibvirtNetworkSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { libvirtNetwork, networkXml, parseNetInfo, parseNetworkXml } from "./libvirt.ts";

const spec: LibvirtNetworkSpec = {
  kind: "libvirt-network",
  name: "secure",
  bridge: "br-secure",
  portgroups: [
    { name: "default", default: true },
    { name: "isolated", default: false },
    { name: "vlan-1081", default: false, vlan: 1081 },
  ],
};
const observed = (xml: string, info: string) => ({
  exists: true,
  state: { ...parseNetworkXml(fixture(`libvirt/${xml}`)), ...parseNetInfo(fixture(`libvirt/${info}`)) },
});
const virsh = (...args: string[]) => ["virsh", "-q", "-c", "qemu:///system", ...args];

describe("virsh output parsing (real libvirt 9.0 output)", () => {
  it("reads the network, its owner metadata and portgroups", () => {
    const s = parseNetworkXml(fixture("libvirt/secure-inactive.xml"));
    expect(s).toMatchObject({ name: "secure", owner: "fixture", forwardMode: "bridge", bridge: "br-secure", virtualport: "openvswitch" });
    expect(s.portgroups).toEqual(spec.portgroups);
    expect(parseNetworkXml(fixture("libvirt/legacy.xml")).owner).toBeUndefined();
  });

  it("reads net-info", () => {
    expect(parseNetInfo(fixture("libvirt/net-info-active.txt"))).toEqual({ active: true, autostart: true, persistent: true });
    expect(parseNetInfo(fixture("libvirt/net-info-inactive.txt")).active).toBe(false);
    expect(() => parseNetInfo("error: failed to get network\n")).toThrow(/virsh net-info/);
  });
});

describe("libvirt-network plan", () => {
  it("defines from stdin, autostarts and starts a missing network", () => {
    const plan = libvirtNetwork.plan(spec, { exists: false }, ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([virsh("net-define", "/dev/stdin"), virsh("net-autostart", "secure"), virsh("net-start", "secure")]);
    expect(plan.commands[0]!.stdin).toBe(networkXml(spec, "fixture"));
  });

  it("the XML we define reads back as converged (round trip through the real dump)", () => {
    expect(libvirtNetwork.plan(spec, observed("secure-active.xml", "net-info-active.txt"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("starts a stopped network", () => {
    const plan = libvirtNetwork.plan(spec, observed("secure-inactive.xml", "net-info-inactive.txt"), ctx);
    expect(plan.changes).toEqual({ active: { old: false, new: true } });
    expect(plan.commands.map((c) => c.argv)).toEqual([virsh("net-start", "secure")]);
  });

  it("redefines with the existing uuid and restarts when the definition changed", () => {
    const plan = libvirtNetwork.plan({ ...spec, bridge: "br-secure2" }, observed("secure-active.xml", "net-info-active.txt"), ctx);
    expect(plan.changes.bridge).toEqual({ old: "br-secure", new: "br-secure2" });
    expect(plan.commands.map((c) => c.argv[4])).toEqual(["net-define", "net-destroy", "net-start"]);
    expect(plan.commands[0]!.stdin).toContain("<uuid>9f7de71a-bc09-43fb-bf8d-fcd7e7716f88</uuid>");
  });

  it("refuses a network it did not create", () => {
    const legacy = { exists: true, state: { ...parseNetworkXml(fixture("libvirt/legacy.xml")), active: false, autostart: false, persistent: true } };
    const plan = libvirtNetwork.plan({ ...spec, name: "legacy", bridge: "br-legacy" }, legacy, ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toMatch(/libvirt network legacy exists and is not managed by netfleet/);
  });
});
