import { describe, expect, it } from "vitest";
import type { KernelBondSpec, PruneSpec, ResourceSpec } from "@netfleet/shared";
import { prune } from "./prune.ts";
import { mutate } from "../exec/runner.ts";
import { fixture, fixtureContext } from "./fixtures.ts";
import { parseAddresses, parseLinks, parseManagementLinks, parseRoutes } from "./ip-json.ts";
import { kernelBond } from "./ip-link.ts";
import { disruptionRefusal, disruptions } from "./management-disruption.ts";
import { guardPlan, moveLines, undoLines } from "./management-guard.ts";
import { managementHolds, type ManagementView } from "./management-view.ts";

// Fixtures: __fixtures__/mgmt (Debian kernel 6.1, see NOTES.md there). "before": eth0 holds
// 10.98.0.11/24, the default route via 10.98.0.254 and 10.99.0.0/24 via it (metric 50);
// "moved": the same on bond0 after the agent's move batch.
function view(state: "before" | "moved", controllers: string[] = []): ManagementView {
  const f = (n: string) => fixture(`mgmt/${state}-${n}.json`);
  return {
    links: parseLinks(f("link")),
    addresses: parseAddresses(f("addr")),
    routes: parseRoutes(f("route")),
    controllerRoutes: controllers.map((controller) => ({ controller, route: parseRoutes(f("route-get-gw"), "ip -json route get")[0]! })),
  };
}

const bond: KernelBondSpec = { kind: "kernel-bond", name: "bond0", mode: "active-backup", members: ["eth0", "eth1"], miimon: 100, mtu: 1500 };
const managed: KernelBondSpec = { ...bond, management: { address: "10.98.0.11/24" } };
const vlan: ResourceSpec = { kind: "vlan-interface", name: "bond0.1081", parent: "bond0", vlan: 1081, mtu: 1500 };
const gwAddr: ResourceSpec = { kind: "interface-address", name: "bond0.1081", addresses: ["192.168.128.1/17"] };
const forward: ResourceSpec = { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" };

describe("routes (real ip -json route output)", () => {
  it("reads the main table: default via the gateway, the kernel prefix route, a static route with its metric", () => {
    expect(parseRoutes(fixture("mgmt/before-route.json"))).toEqual([
      { dst: "default", gateway: "10.98.0.254", dev: "eth0" },
      { dst: "10.98.0.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "10.98.0.11" },
      { dst: "10.99.0.0/24", gateway: "10.98.0.254", dev: "eth0", metric: 50 },
    ]);
  });

  it("a multipath route gives one route per hop", () => {
    const multipath = '[{"dst":"default","flags":[],"nexthops":[{"gateway":"10.0.0.1","dev":"eth0","weight":1,"flags":[]},{"gateway":"10.0.1.1","dev":"eth1","weight":1,"flags":[]}]}]';
    expect(parseRoutes(multipath).map((r) => `${r.dev} via ${r.gateway}`)).toEqual(["eth0 via 10.0.0.1", "eth1 via 10.0.1.1"]);
  });

  it("rejects output it does not understand, naming the command", () => {
    expect(() => parseRoutes('[{"gateway": 1}]')).toThrow(/ip -json route show: 0\.dst/);
  });
});

describe("management holds", () => {
  it("eth0 holds the address, the default route and the route to the controller; eth1 nothing", () => {
    const holds = managementHolds(view("before", ["10.98.0.254"]));
    expect([...holds.keys()]).toEqual(["eth0"]);
    expect(holds.get("eth0")).toMatchObject({
      addresses: ["10.98.0.11/24"],
      defaultRoute: { gateway: "10.98.0.254" },
      controller: { controller: "10.98.0.254", route: { dev: "eth0" } },
    });
    // The prefix route comes back with the address: only the others are re-added.
    expect(holds.get("eth0")!.routes.map((r) => r.dst)).toEqual(["default", "10.99.0.0/24"]);
  });
});

describe("guard: a plan that would cut the host off", () => {
  it("refuses to enslave eth0 without carries_management, saying which interface, address and route, and why", () => {
    const d = guardPlan([bond, vlan, gwAddr, forward], view("before"));
    expect(d.blocked.get("kernel-bond[bond0]")).toBe(
      "eth0 holds 10.98.0.11/24 and the default route via 10.98.0.254; enslaving it to bond0 would cut this host off its controller; " +
        "set carries_management: true on the uplink to move the address onto the bond, or move it off eth0",
    );
    // What depends on the bond does not run either; what does not, does.
    expect(d.blocked.get("vlan-interface[bond0.1081]")).toMatch(/^not applied: it depends on bond0, which was refused \(eth0 holds 10\.98\.0\.11\/24/);
    expect(d.blocked.get("interface-address[bond0.1081]")).toMatch(/depends on bond0\.1081/);
    expect(d.blocked.has("sysctl[net.ipv4.ip_forward]")).toBe(false);
    expect(d.moves.size).toBe(0);
  });

  it("control: the same bond over members that hold nothing is not refused", () => {
    const d = guardPlan([{ ...bond, members: ["eth1"] }, vlan], view("before"));
    expect(d.blocked.size).toBe(0);
  });

  it("a link holding only the route to the controller is refused too", () => {
    const v = view("before", ["10.98.0.254"]);
    v.addresses.set("eth0", []);
    v.routes = v.routes.filter((r) => r.dst !== "default");
    expect(guardPlan([bond], v).blocked.get("kernel-bond[bond0]")).toMatch(/^eth0 holds the route to the controller 10\.98\.0\.254; enslaving it to bond0/);
  });

  it("an OVS bridge adding eth0 as a system port or a bond member is refused", () => {
    const trunk = (ports: Extract<ResourceSpec, { kind: "ovs-bridge" }>["ports"]): ResourceSpec => ({ kind: "ovs-bridge", name: "br-uplink", datapath: "system", ports });
    const sys = guardPlan([trunk([{ name: "eth0", type: "system", trunks: [1081] }])], view("before"));
    expect(sys.blocked.get("ovs-bridge[br-uplink]")).toMatch(/^eth0 holds 10\.98\.0\.11\/24 and the default route via 10\.98\.0\.254; adding it to OVS bridge br-uplink would cut this host off its controller; move it off eth0 first/);
    const bonded = guardPlan([trunk([{ name: "bond0", type: "bond", members: ["eth1", "eth0"], bond_mode: "active-backup" }])], view("before"));
    expect(bonded.blocked.get("ovs-bridge[br-uplink]")).toMatch(/adding it to OVS bridge br-uplink \(bond bond0\)/);
    // control: eth1 alone holds nothing
    expect(guardPlan([trunk([{ name: "eth1", type: "system" }])], view("before")).blocked.size).toBe(0);
  });

  it("with management.address held by eth0: not refused, the move planned with the gateway as the lockout target", () => {
    const d = guardPlan([managed, vlan], view("before"));
    expect(d.blocked.size).toBe(0);
    expect(d.moves.get("kernel-bond[bond0]")).toEqual({
      bond: "bond0",
      members: ["eth0", "eth1"],
      member: "eth0",
      address: "10.98.0.11/24",
      addresses: ["10.98.0.11/24"],
      routes: [
        { dst: "default", gateway: "10.98.0.254", dev: "eth0" },
        { dst: "10.99.0.0/24", gateway: "10.98.0.254", dev: "eth0", metric: 50 },
      ],
      target: "10.98.0.254",
    });
  });

  it("a management.address that eth0 does not hold moves nothing: refused as without it", () => {
    const d = guardPlan([{ ...bond, management: { address: "10.98.0.12/24" } }], view("before"));
    expect(d.blocked.get("kernel-bond[bond0]")).toMatch(/^eth0 holds 10\.98\.0\.11\/24/);
  });

  it("a move that failed its lockout check before is refused until its record is removed", () => {
    const failed = { bond: "bond0", member: "eth0", address: "10.98.0.11/24", at: "2026-11-30T01:00:00Z", reason: "10.98.0.254 did not answer through bond0 (10 pings, 10 s)" };
    const d = guardPlan([managed], view("before"), { failed, failedFile: "/var/lib/netfleet-agent/management-move-failed.json" });
    expect(d.blocked.get("kernel-bond[bond0]")).toBe(
      "moving 10.98.0.11/24 from eth0 onto bond0 failed its lockout check at 2026-11-30T01:00:00Z (10.98.0.254 did not answer through bond0 (10 pings, 10 s)) and was undone; " +
        "fix the path through bond0 (switch ports, cabling, VLANs), then remove /var/lib/netfleet-agent/management-move-failed.json to try again",
    );
    expect(d.moves.size).toBe(0);
  });

  it("after the move (eth0 and eth1 enslaved, the address and routes on bond0) there is nothing to guard", () => {
    const d = guardPlan([managed, vlan], view("moved", ["10.98.0.254"]));
    expect(d).toEqual({ blocked: new Map(), moves: new Map() });
    // and without management.address too: members already in the bond are not enslaved again
    expect(guardPlan([bond], view("moved")).blocked.size).toBe(0);
  });
});

describe("move and undo lines", () => {
  const move = guardPlan([managed], view("before")).moves.get("kernel-bond[bond0]")!;

  it("the move: the addresses leave eth0 before it is enslaved; on the bond, the addresses, then every route with dev bond0", () => {
    expect(moveLines(move)).toEqual({
      before: [["addr", "del", "10.98.0.11/24", "dev", "eth0"]],
      after: [
        ["addr", "add", "10.98.0.11/24", "dev", "bond0"],
        ["route", "replace", "default", "via", "10.98.0.254", "dev", "bond0"],
        ["route", "replace", "10.99.0.0/24", "via", "10.98.0.254", "dev", "bond0", "metric", "50"],
      ],
    });
  });

  it("the undo: members released, the addresses and routes back on eth0 as they were (the captured 'before' table)", () => {
    expect(undoLines(move).map((l) => l.join(" "))).toEqual([
      "link set dev eth0 nomaster",
      "link set dev eth1 nomaster",
      "addr del 10.98.0.11/24 dev bond0",
      "link set dev eth0 up",
      "link set dev eth1 up",
      "addr add 10.98.0.11/24 dev eth0",
      "route replace default via 10.98.0.254 dev eth0",
      "route replace 10.99.0.0/24 via 10.98.0.254 dev eth0 metric 50",
    ]);
    // Every non-kernel route of the captured table before the move comes back.
    const before = parseRoutes(fixture("mgmt/before-route.json")).filter((r) => r.protocol !== "kernel");
    expect(before.map((r) => `${r.dst} ${r.gateway} ${r.metric ?? ""}`)).toEqual(move.routes.map((r) => `${r.dst} ${r.gateway} ${r.metric ?? ""}`));
  });
});

// Upper devices: derived fixtures (see __fixtures__/mgmt/DERIVED.md): the captured "before" rows
// with eth0's address and routes on a bridge br0 eth0 is a port of, a VLAN eth0.10 or a macvlan mv0 on eth0.
function upperView(tag: "bridge" | "vlan" | "macvlan"): ManagementView {
  const f = (n: string) => fixture(`mgmt/derived-${tag}-${n}.json`);
  return { links: parseManagementLinks(f("link")), addresses: parseAddresses(f("addr")), routes: parseRoutes(f("route")), controllerRoutes: [] };
}
const ovsPort: ResourceSpec = { kind: "ovs-bridge", name: "br-uplink", ports: [{ name: "eth0", type: "system" }] } as ResourceSpec;

describe("guard: a link above the member holds the management path", () => {
  it("eth0 a port of the Linux bridge br0 that holds the address: enslaving eth0 is refused, naming br0", () => {
    const d = guardPlan([bond, vlan], upperView("bridge"));
    expect(d.blocked.get("kernel-bond[bond0]")).toBe(
      "eth0 is a port of br0, which holds 10.98.0.11/24 and the default route via 10.98.0.254; enslaving it to bond0 would cut this host off its controller; " +
        "move the management address and routes off br0 first, or make this change from the console",
    );
    expect(d.blocked.get("vlan-interface[bond0.1081]")).toMatch(/depends on bond0, which was refused \(eth0 is a port of br0/);
    expect(guardPlan([ovsPort], upperView("bridge")).blocked.get("ovs-bridge[br-uplink]")).toMatch(/^eth0 is a port of br0, which holds 10\.98\.0\.11\/24 .*adding it to OVS bridge br-uplink/);
  });

  it("carries_management moves nothing when the address is on br0, not on the member itself", () => {
    const d = guardPlan([{ ...managed }], upperView("bridge"));
    expect(d.moves.size).toBe(0);
    expect(d.blocked.get("kernel-bond[bond0]")).toMatch(/^eth0 is a port of br0/);
  });

  it("a VLAN eth0.10 on eth0 holding the address and default route: refused, naming eth0.10", () => {
    const d = guardPlan([bond], upperView("vlan"));
    expect(d.blocked.get("kernel-bond[bond0]")).toBe(
      "eth0 carries eth0.10 (vlan), which holds 10.98.0.11/24 and the default route via 10.98.0.254; enslaving it to bond0 would cut this host off its controller; " +
        "move the management address and routes off eth0.10 first, or make this change from the console",
    );
  });

  it("a macvlan mv0 on eth0 (its parent read from `link`): refused, naming mv0", () => {
    const v = upperView("macvlan");
    expect(v.links.get("mv0")).toMatchObject({ kind: "macvlan", parent: "eth0" });
    expect(guardPlan([bond], v).blocked.get("kernel-bond[bond0]")).toMatch(/^eth0 carries mv0 \(macvlan\), which holds 10\.98\.0\.11\/24 and the default route/);
  });

  it("control: a member with nothing above it still enslaves (eth1 beside the bridge, the VLAN, the macvlan)", () => {
    for (const tag of ["bridge", "vlan", "macvlan"] as const) {
      expect(guardPlan([{ ...bond, members: ["eth1"] }], upperView(tag)).blocked.size).toBe(0);
      expect(guardPlan([{ ...ovsPort, ports: [{ name: "eth1", type: "system" }] } as ResourceSpec], upperView(tag)).blocked.size).toBe(0);
    }
  });

  it("the bond a member already belongs to is not 'above' it for that bond; another bond is (a renamed bond)", () => {
    const v = view("moved");
    expect(guardPlan([managed], v).blocked.size).toBe(0);
    expect(guardPlan([{ ...managed, name: "bond1" }], v).blocked.get("kernel-bond[bond1]")).toMatch(/^eth0 is a port of bond0, which holds 10\.98\.0\.11\/24 and the default route via 10\.98\.0\.254/);
  });
});

describe("guard: plans that take down, release, re-mode or delete the link holding the path", () => {
  const planOf = (spec: KernelBondSpec) => {
    const v = view("moved");
    return kernelBond.plan(spec, { links: v.links }, fixtureContext);
  };

  it("a mode change of bond0 (which holds the address after the move) is refused, saying which link, what it holds, what to do", () => {
    const plan = planOf({ ...managed, mode: "802.3ad", lacpActive: true });
    const ops = disruptions(plan.commands);
    expect(ops).toEqual(expect.arrayContaining([{ op: "down", link: "bond0" }, { op: "nomaster", link: "eth0" }, { op: "mode", link: "bond0" }]));
    const why = disruptionRefusal(ops, view("moved"));
    expect(why).toMatch(/^taking bond0 down would cut this host off its controller: bond0 holds 10\.98\.0\.11\/24 and the default route via 10\.98\.0\.254; move the management address and routes off bond0 first, or make this change from the console/);
    expect(why).toMatch(/releasing eth0 from bond0 would cut/);
    expect(why).toMatch(/changing the mode of bond0/);
  });

  it("releasing a member of bond0 is refused", () => {
    const plan = planOf({ ...managed, members: ["eth0"] });
    expect(disruptionRefusal(disruptions(plan.commands), view("moved"))).toMatch(/^releasing eth1 from bond0 would cut this host off its controller: bond0 holds 10\.98\.0\.11\/24/);
  });

  it("deleting bond0 (prune's `ip link del`, e.g. after a rename) is refused", () => {
    const del = [mutate(["ip", "link", "del", "dev", "bond0"])];
    expect(disruptionRefusal(disruptions(del), view("moved"))).toMatch(/^deleting bond0 would cut this host off its controller: bond0 holds/);
  });

  it("control: an MTU change of bond0 or an added member touches nothing holding the path", () => {
    const mtu = planOf({ ...managed, mtu: 9000 });
    expect(mtu.commands.length).toBeGreaterThan(0);
    expect(disruptionRefusal(disruptions(mtu.commands), view("moved"))).toBeUndefined();
    const v = view("moved");
    v.links.set("eth2", { name: "eth2", mtu: 1500, up: true });
    const add = kernelBond.plan({ ...managed, members: ["eth0", "eth1", "eth2"] }, { links: v.links }, fixtureContext);
    expect(disruptions(add.commands)).toContainEqual({ op: "down", link: "eth2" });
    expect(disruptionRefusal(disruptions(add.commands), v)).toBeUndefined();
  });

  it("control: deleting a link with only an address (a backend gateway VLAN) is not refused; the move's own member going down is exempt", () => {
    const v = view("before");
    expect(disruptionRefusal([{ op: "del", link: "eth1" }], v)).toBeUndefined();
    v.routes = v.routes.filter((r) => r.protocol === "kernel");
    expect(disruptionRefusal([{ op: "del", link: "eth0" }], v)).toBeUndefined();
    expect(disruptionRefusal([{ op: "down", link: "eth0" }], view("before"), "eth0")).toBeUndefined();
    expect(disruptionRefusal([{ op: "down", link: "eth0" }], view("before"))).toMatch(/^taking eth0 down/);
  });
});

describe("guard: prune deleting the bond that holds the path", () => {
  const cleanup: PruneSpec = { kind: "prune", name: "host", keep: { links: [], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false } };
  const observed = (v: ManagementView) => ({ links: v.links, ovs: { bridges: new Map(), ports: new Map(), interfaces: new Map() }, libvirt: [] });

  it("a bond0 no longer wanted (renamed in the inventory) that holds the address and default route: its `ip link del` is refused", () => {
    const v = view("moved");
    const plan = prune.plan(cleanup, observed(v), fixtureContext);
    expect(plan.commands.map((c) => c.argv)).toEqual([["ip", "link", "del", "dev", "bond0"]]);
    expect(disruptionRefusal(disruptions(plan.commands), v)).toBe(
      "deleting bond0 would cut this host off its controller: bond0 holds 10.98.0.11/24 and the default route via 10.98.0.254; " +
        "move the management address and routes off bond0 first, or make this change from the console",
    );
  });

  it("control: the same cleanup once the address and routes are off bond0 deletes it", () => {
    const v = view("moved");
    v.addresses = new Map();
    v.routes = [];
    expect(disruptionRefusal(disruptions(prune.plan(cleanup, observed(v), fixtureContext).commands), v)).toBeUndefined();
  });
});
