import { describe, expect, it } from "vitest";
import { ParseError, type VxlanInterfaceSpec } from "@netfleet/shared";
import { fixture, fixtureContext } from "./fixtures.ts";
import { parseFloodList, parseVxlanLink, vxlanInterface, type VxlanObservation } from "./vxlan-interface.ts";

// The fixtures were captured with owner "lab" (README.md beside them).
const ctx = { ...fixtureContext, owner: "lab" };
const spec: VxlanInterfaceSpec = { kind: "vxlan-interface", name: "vx-secure", vni: 1081, local: "10.99.0.1", underlay: "mgmt0", port: 4789, remotes: ["10.99.0.3", "10.99.0.2"], mtu: 1450 };
const observed = (name = "vx-secure", fdb = "vx-secure-fdb.json"): VxlanObservation => {
  const link = parseVxlanLink(fixture("vxlan/vmhost-link.json"), name);
  return link ? { link, flood: parseFloodList(fixture(`vxlan/${fdb}`)) } : { flood: [] };
};
const stdin = (p: ReturnType<typeof vxlanInterface.plan>) => p.commands.map((c) => [c.argv.join(" "), c.stdin ?? ""].join("\n").trim());

describe("vxlan device parsing (real iproute2 output)", () => {
  it("reads VNI, local address, underlay, port, MTU, state and alias; the flood list from the all-zeros entries", () => {
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "vx-secure")).toEqual({ name: "vx-secure", kind: "vxlan", vni: 1081, local: "10.99.0.1", underlay: "mgmt0", port: 4789, mtu: 1450, up: true, alias: "netfleet-owner=lab" });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "vx-other")).toMatchObject({ vni: 7, port: 8472, up: false });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "mgmt0")).toMatchObject({ kind: "veth" });
    expect(parseVxlanLink(fixture("vxlan/vmhost-link.json"), "vx-none")).toBeUndefined();
    expect(parseFloodList(fixture("vxlan/vx-secure-fdb.json"))).toEqual(["10.99.0.2", "10.99.0.3"]);
    expect(parseFloodList(fixture("vxlan/empty-fdb.json"))).toEqual([]);
  });

  it("learned entries (a VM's MAC) are not flood entries", () => {
    expect(parseFloodList('[{"mac":"52:54:00:81:0b:01","dst":"10.99.0.2","flags":["self"],"state":""},{"mac":"00:00:00:00:00:00","dst":"10.99.0.3","flags":["self"],"state":"permanent"}]')).toEqual(["10.99.0.3"]);
  });

  it("rejects output it does not understand, naming the tool", () => {
    expect(() => parseVxlanLink("nope", "vx-secure")).toThrow(ParseError);
    expect(() => parseFloodList("[{}]")).toThrow(/bridge -json fdb show/);
  });
});

describe("vxlan-interface plan", () => {
  it("creates the device with dstport 4789 (the kernel's default is 8472), marks it, sizes it, and floods to each remote", () => {
    const plan = vxlanInterface.plan(spec, vxlanInterface.absent(spec), ctx);
    expect(plan.changes).toEqual({ present: { old: false, new: true }, remotes: { old: [], new: ["10.99.0.2", "10.99.0.3"] } });
    expect(stdin(plan)).toEqual([
      [
        "ip -batch -",
        "link add name vx-secure type vxlan id 1081 local 10.99.0.1 dev mgmt0 dstport 4789",
        "link set dev vx-secure alias netfleet-owner=lab",
        "link set dev vx-secure mtu 1450",
        "link set dev vx-secure up",
      ].join("\n"),
      "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.2",
      "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3",
    ]);
    expect(plan.commands.every((c) => c.mutating)).toBe(true);
  });

  it("already converged → no commands", () => {
    expect(vxlanInterface.plan(spec, observed(), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("a remote gone and one new: one entry deleted, one appended, the device left alone", () => {
    const plan = vxlanInterface.plan({ ...spec, remotes: ["10.99.0.2", "10.99.0.4"] }, observed(), ctx);
    expect(plan.changes).toEqual({ remotes: { old: ["10.99.0.2", "10.99.0.3"], new: ["10.99.0.2", "10.99.0.4"] } });
    expect(stdin(plan)).toEqual(["bridge fdb del 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3", "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.4"]);
  });

  it("MTU drift is set in place", () => {
    const plan = vxlanInterface.plan({ ...spec, mtu: 1400 }, observed(), ctx);
    expect(plan.changes).toEqual({ mtu: { old: 1450, new: 1400 } });
    expect(stdin(plan)).toEqual(["ip link set dev vx-secure mtu 1400"]);
  });

  it("another VNI (fixed at creation) makes the device anew, with its flood list", () => {
    const plan = vxlanInterface.plan({ ...spec, vni: 5081 }, observed(), ctx);
    expect(plan.changes).toEqual({ vni: { old: 1081, new: 5081 } });
    expect(stdin(plan)[0]).toMatch(/^ip -batch -\nlink del dev vx-secure\nlink add name vx-secure type vxlan id 5081 /);
    expect(stdin(plan).slice(1)).toEqual(["bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.2", "bridge fdb append 00:00:00:00:00:00 dev vx-secure dst 10.99.0.3"]);
  });

  it("a device not marked as ours is never changed: blocked with the hand-over command; left alone when it matches", () => {
    const { underlay: _, ...noDev } = spec;
    const other = vxlanInterface.plan({ ...noDev, name: "vx-other", vni: 7, port: 8472, remotes: [], mtu: 1500 }, observed("vx-other", "empty-fdb.json"), ctx);
    expect(other.commands).toEqual([]);
    expect(other.blocked).toBe("vxlan device vx-other exists and is not managed by netfleet; to hand it over run: ip link set dev vx-other alias netfleet-owner=lab");
    const foreign = vxlanInterface.plan(spec, observed(), { ...ctx, owner: "elsewhere" });
    expect(foreign).toEqual({ changes: {}, commands: [], comment: "vx-secure is not marked as ours but already matches; left as is" });
  });

  it("a device of another kind under the name is blocked", () => {
    expect(vxlanInterface.plan({ ...spec, name: "mgmt0" }, observed("mgmt0"), ctx)).toMatchObject({ commands: [], blocked: "mgmt0 exists but is a veth device, not a vxlan device" });
  });
});
