import { describe, expect, it } from "vitest";
import { gatherHostFacts, parseLinks } from "./host-facts.ts";

describe("host facts", () => {
  it("reads links and MACs from ip -json, skipping what is not an Ethernet MAC", () => {
    const json = JSON.stringify([
      { ifname: "lo", address: "00:00:00:00:00:00", link_type: "loopback", operstate: "UNKNOWN" },
      { ifname: "eno1", address: "52:54:00:AA:00:01", link_type: "ether", operstate: "UP" },
      { ifname: "bond0", address: "52:54:00:aa:00:02", link_type: "ether", operstate: "UP", linkinfo: { info_kind: "bond" } },
      { ifname: "bad name", address: "52:54:00:aa:00:03", link_type: "ether" },
    ]);
    expect(parseLinks(json)).toEqual([
      { name: "lo", mac: null, state: "UNKNOWN", kind: null },
      { name: "eno1", mac: "52:54:00:aa:00:01", state: "UP", kind: null },
      { name: "bond0", mac: "52:54:00:aa:00:02", state: "UP", kind: "bond" },
    ]);
    expect(parseLinks("not json")).toEqual([]);
  });

  it("tolerates missing tools", async () => {
    const facts = await gatherHostFacts(async () => undefined, "/nonexistent/");
    expect(facts).toEqual({
      interfaces: [],
      kernel: { "8021q": { loaded: false, available: false }, bonding: { loaded: false, available: false }, openvswitch: { loaded: false, available: false } },
      ovsVersion: null,
      libvirtVersion: null,
    });
  });

  it("parses tool versions", async () => {
    const read = async (argv: string[]) =>
      argv[0] === "ovs-vsctl" ? "ovs-vsctl (Open vSwitch) 3.1.0\nDB Schema 8.3.1\n" : argv[0] === "virsh" ? "9.0.0\n" : "[]";
    expect(await gatherHostFacts(read, "/nonexistent/")).toMatchObject({ ovsVersion: "3.1.0", libvirtVersion: "9.0.0" });
  });

  it("gathers this host's real facts", async () => {
    const facts = await gatherHostFacts();
    expect(facts.interfaces.some((i) => i.name === "lo")).toBe(true);
  });
});
