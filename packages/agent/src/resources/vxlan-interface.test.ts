import { describe, expect, it } from "vitest";
import { ParseError, type VxlanInterfaceSpec } from "@netfleet/shared";
import { fixture, fixtureContext } from "./fixtures.ts";
import { normaliseListing } from "./nft-live.ts";
import { parseFdb, parseFloodList, parseVxlanLink, vxlanInterface, type VxlanObservation } from "./vxlan-interface.ts";
import { filterCommands, filterIsOurs, filterTable, observeFilter } from "./vxlan-interface-filter.ts";
import { ExecError } from "../exec/runner.ts";
import { noFiles } from "./fixtures.ts";
import type { ObserveContext } from "./types.ts";

// The fixtures were captured with owner "lab" (README.md beside them; capture-nolearning.sh).
const ctx = { ...fixtureContext, owner: "lab" };
const macs = [
  { mac: "02:4e:46:00:04:39", dst: "10.99.0.3" },
  { mac: "52:54:00:81:0b:01", dst: "10.99.0.2" },
];
const spec: VxlanInterfaceSpec = { kind: "vxlan-interface", name: "vx-secure", vni: 1081, local: "10.99.0.1", underlay: "mgmt0", port: 4789, remotes: ["10.99.0.3", "10.99.0.2"], macs, mtu: 1450 };
const filterOn = { exists: true, lines: normaliseListing(fixture("vxlan/filter-table.nft")) };
const observed = (name = "vx-secure", fdb = "vx-secure-fdb-static.json", link = "vmhost-link.json"): VxlanObservation => {
  const l = parseVxlanLink(fixture(`vxlan/${link}`), name);
  return l ? { link: l, ...parseFdb(fixture(`vxlan/${fdb}`)), filter: filterOn } : { flood: [], filter: filterOn };
};
const stdin = (p: ReturnType<typeof vxlanInterface.plan>) => p.commands.map((c) => [c.argv.join(" "), c.stdin ?? ""].join("\n").trim());
const filterText = (remotes: string) =>
  [
    "nft -f -",
    "table inet netfleet-vx-secure {}",
    "delete table inet netfleet-vx-secure",
    "table inet netfleet-vx-secure {",
    "\tchain input {",
    "\t\ttype filter hook input priority filter; policy accept;",
    `\t\tudp dport 4789 @th,96,24 0x439 ip saddr != ${remotes} counter drop comment "netfleet-owner=lab"`,
    "\t}",
    "}",
  ].join("\n");

describe("vxlan device parsing (real iproute2 output)", () => {
  it("reads VNI, local address, underlay, port, MTU, state, alias and learning; the flood list from the all-zeros entries", () => {
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "vx-secure")).toEqual({ name: "vx-secure", kind: "vxlan", vni: 1081, local: "10.99.0.1", underlay: "mgmt0", port: 4789, mtu: 1450, up: true, alias: "netfleet-owner=lab", learning: false });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link-learning.json"), "vx-secure")).toMatchObject({ learning: true });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "vx-other")).toMatchObject({ vni: 7, port: 8472, up: false, learning: true });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "mgmt0")).toMatchObject({ kind: "veth" });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "vx-none")).toBeUndefined();
    expect(parseFloodList(fixture("vxlan/vx-secure-fdb.json"))).toEqual(["10.99.0.2", "10.99.0.3"]);
    expect(parseFloodList(fixture("vxlan/empty-fdb.json"))).toEqual([]);
  });

  it("static unicast entries apart from the flood list; a learned entry (state not permanent) apart from both", () => {
    expect(parseFdb(fixture("vxlan/vx-secure-fdb-static.json"))).toEqual({ flood: ["10.99.0.2", "10.99.0.3"], statics: macs, learned: [] });
    expect(parseFdb(fixture("vxlan/vx-secure-fdb-learned.json"))).toEqual({ flood: ["10.99.0.2", "10.99.0.3"], statics: macs, learned: [{ mac: "52:54:00:fd:99:99", dst: "10.99.0.254" }] });
  });

  it("rejects output it does not understand, naming the tool", () => {
    expect(() => parseVxlanLink("nope", "vx-secure")).toThrow(ParseError);
    expect(() => parseFloodList("[{}]")).toThrow(/bridge -json fdb show/);
  });
});

describe("vxlan source filter (real nft 1.0.6 listing)", () => {
  it("the table as written lists as nft prints it (the VNI in hex), so a live table that matches plans nothing", () => {
    expect(normaliseListing(filterTable(spec, "lab"))).toEqual(filterOn.lines);
    expect(filterIsOurs(filterOn, "lab")).toBe(true);
    expect(filterIsOurs(filterOn, "elsewhere")).toBe(false);
    expect(filterCommands(spec, filterOn, "lab")).toEqual([]);
  });

  it("a remote more, or the rule edited by hand, replaces the table in one transaction", () => {
    expect(stdin({ changes: {}, commands: filterCommands({ ...spec, remotes: ["10.99.0.2", "10.99.0.3", "10.99.0.4"] }, filterOn, "lab") })).toEqual([filterText("{ 10.99.0.2, 10.99.0.3, 10.99.0.4 }")]);
    const edited = { exists: true, lines: filterOn.lines.map((l) => l.replace(" drop ", " accept ")) };
    expect(filterCommands(spec, edited, "lab")).toHaveLength(1);
  });

  it("observes: the listing normalised; a missing table (nft's own words) is absent; no nft at all is an error naming the package", async () => {
    const host = (read: ObserveContext["read"]): ObserveContext => ({ ...ctx, ...noFiles, read });
    expect(await observeFilter("vx-secure", host(async () => ({ stdout: fixture("vxlan/filter-table.nft"), stderr: "", exitCode: 0 })))).toEqual(filterOn);
    expect(await observeFilter("vx-datain", host(async () => ({ stdout: "", stderr: fixture("vxlan/filter-missing.stderr"), exitCode: 1 })))).toEqual({ exists: false, lines: [] });
    const noNft = host(async (argv) => {
      throw new ExecError(argv, 127, "spawn nft ENOENT");
    });
    await expect(observeFilter("vx-secure", noNft)).rejects.toThrow("nft is not installed: a host in uplink mode vxlan needs it for vx-secure's source filter (Debian package nftables)");
  });

  it("one remote is written bare, none drops every packet into the VNI", () => {
    expect(filterTable({ ...spec, remotes: ["10.99.0.3"] }, "lab")).toContain("@th,96,24 0x439 ip saddr != 10.99.0.3 counter drop");
    expect(filterTable({ ...spec, remotes: [] }, "lab")).toContain("udp dport 4789 @th,96,24 0x439 counter drop");
  });
});

describe("vxlan-interface plan", () => {
  it("creates the filter first, then the device nolearning with dstport 4789 (the kernel's default is 8472), marks it, sizes it, floods to each remote, and sets the static entries", () => {
    const plan = vxlanInterface.plan(spec, vxlanInterface.absent(spec), ctx);
    expect(plan.changes).toEqual({
      present: { old: false, new: true },
      remotes: { old: [], new: ["10.99.0.2", "10.99.0.3"] },
      macs: { old: [], new: ["02:4e:46:00:04:39 10.99.0.3", "52:54:00:81:0b:01 10.99.0.2"] },
      filter: { old: null, new: "only from 10.99.0.2, 10.99.0.3" },
    });
    expect(stdin(plan)).toEqual([
      filterText("{ 10.99.0.2, 10.99.0.3 }"),
      [
        "ip -batch -",
        "link add name vx-secure type vxlan id 1081 local 10.99.0.1 dev mgmt0 dstport 4789 nolearning",
        "link set dev vx-secure alias netfleet-owner=lab",
        "link set dev vx-secure mtu 1450",
        "link set dev vx-secure up",
      ].join("\n"),
      "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.2",
      "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3",
      "bridge fdb replace 02:4e:46:00:04:39 dev vx-secure dst 10.99.0.3",
      "bridge fdb replace 52:54:00:81:0b:01 dev vx-secure dst 10.99.0.2",
    ]);
    expect(plan.commands.every((c) => c.mutating)).toBe(true);
  });

  it("already converged → no commands", () => {
    expect(vxlanInterface.plan(spec, observed(), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("a device an earlier release made (learning, no filter, a MAC learned from a stranger): learning off in place, the learned entry deleted, the filter made", () => {
    const o: VxlanObservation = { ...observed("vx-secure", "vx-secure-fdb-learned.json", "vmhost-link-learning.json"), filter: { exists: false, lines: [] } };
    const plan = vxlanInterface.plan(spec, o, ctx);
    expect(plan.changes).toEqual({ learning: { old: true, new: false }, learned: { old: ["52:54:00:fd:99:99 10.99.0.254"], new: [] }, filter: { old: null, new: "only from 10.99.0.2, 10.99.0.3" } });
    expect(stdin(plan)).toEqual([filterText("{ 10.99.0.2, 10.99.0.3 }"), "ip link set dev vx-secure type vxlan nolearning", "bridge fdb del 52:54:00:fd:99:99 dev vx-secure dst 10.99.0.254"]);
  });

  it("a VM moved to another host: its entry replaced; a VM gone: its entry deleted", () => {
    const plan = vxlanInterface.plan({ ...spec, macs: [{ mac: "52:54:00:81:0B:01", dst: "10.99.0.4" }] }, observed(), ctx);
    expect(plan.changes).toEqual({ macs: { old: ["02:4e:46:00:04:39 10.99.0.3", "52:54:00:81:0b:01 10.99.0.2"], new: ["52:54:00:81:0b:01 10.99.0.4"] } });
    expect(stdin(plan)).toEqual(["bridge fdb del 02:4e:46:00:04:39 dev vx-secure dst 10.99.0.3", "bridge fdb replace 52:54:00:81:0b:01 dev vx-secure dst 10.99.0.4"]);
  });

  it("a remote gone and one new: one flood entry deleted, one appended, the filter follows, the device left alone", () => {
    const plan = vxlanInterface.plan({ ...spec, remotes: ["10.99.0.2", "10.99.0.4"] }, observed(), ctx);
    expect(plan.changes).toEqual({ remotes: { old: ["10.99.0.2", "10.99.0.3"], new: ["10.99.0.2", "10.99.0.4"] }, filter: { old: "differs", new: "only from 10.99.0.2, 10.99.0.4" } });
    expect(stdin(plan)).toEqual([filterText("{ 10.99.0.2, 10.99.0.4 }"), "bridge fdb del 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3", "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.4"]);
  });

  it("MTU drift is set in place", () => {
    const plan = vxlanInterface.plan({ ...spec, mtu: 1400 }, observed(), ctx);
    expect(plan.changes).toEqual({ mtu: { old: 1450, new: 1400 } });
    expect(stdin(plan)).toEqual(["ip link set dev vx-secure mtu 1400"]);
  });

  it("another VNI (fixed at creation) makes the device anew, with its flood list, static entries and filter", () => {
    const plan = vxlanInterface.plan({ ...spec, vni: 5081 }, observed(), ctx);
    expect(plan.changes).toMatchObject({ vni: { old: 1081, new: 5081 }, filter: { old: "differs" } });
    expect(stdin(plan)[0]).toContain("@th,96,24 0x13d9 ip saddr != { 10.99.0.2, 10.99.0.3 }");
    expect(stdin(plan)[1]).toMatch(/^ip -batch -\nlink del dev vx-secure\nlink add name vx-secure type vxlan id 5081 .* nolearning\n/);
    expect(stdin(plan).slice(2)).toEqual([
      "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.2",
      "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3",
      "bridge fdb replace 02:4e:46:00:04:39 dev vx-secure dst 10.99.0.3",
      "bridge fdb replace 52:54:00:81:0b:01 dev vx-secure dst 10.99.0.2",
    ]);
  });

  it("a device not marked as ours is never changed: blocked with the hand-over command; left alone when it matches (its filter, ours, is made)", () => {
    const { underlay: _, macs: _m, ...noDev } = spec;
    const other = vxlanInterface.plan({ ...noDev, name: "vx-other", vni: 7, port: 8472, remotes: [], mtu: 1500 }, observed("vx-other", "empty-fdb.json"), ctx);
    expect(other.commands).toEqual([]);
    expect(other.blocked).toBe("vxlan device vx-other exists and is not managed by netfleet; to hand it over run: ip link set dev vx-other alias netfleet-owner=lab");
    const foreign = vxlanInterface.plan(spec, observed(), { ...ctx, owner: "elsewhere" });
    expect(foreign).toMatchObject({ changes: { filter: { old: "differs" } }, comment: "vx-secure is not marked as ours but already matches; left as is" });
    expect(foreign.commands.map((c) => c.argv.join(" "))).toEqual(["nft -f -"]);
  });

  it("a device of another kind under the name is blocked", () => {
    expect(vxlanInterface.plan({ ...spec, name: "mgmt0" }, observed("mgmt0"), ctx)).toMatchObject({ commands: [], blocked: "mgmt0 exists but is a veth device, not a vxlan device" });
  });
});
