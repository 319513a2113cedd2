import { describe, expect, it } from "vitest";
import type { KernelBondSpec, ResourceSpec } from "@netfleet/shared";
import { fixture } from "./fixtures.ts";
import { parseAddresses, parseLinks } from "./ip-link.ts";
import { guardPlan, managementHolds, moveLines, parseRoutes, undoLines, type ManagementView } from "./management-guard.ts";

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
