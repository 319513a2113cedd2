import { describe, expect, it } from "vitest";

/**
 * Kernel-tier assertions for the agent's guards (registered by kernel.test.ts,
 * which boots the guest once): the wrong host's assignment is refused with
 * nothing changed (guest/suite.sh, guest/backend.sh), and the management-link
 * guard on the real kernel (guest/management.sh: hosts mA, mB, mC).
 */
export interface GuestReader {
  /** A file the guest wrote under /xfer/out (throws when missing). */
  text(rel: string): string;
  /** The exit code a `rec` or `agent` step recorded. */
  rc(name: string): number;
}

interface AgentResult {
  id: string;
  result: boolean | null;
  changed: boolean;
  commands: string[];
  comment: string;
  error?: string;
}

interface AddrRow {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface RouteRow {
  dst: string;
  gateway?: string;
  dev?: string;
}
interface LinkRow {
  ifname: string;
  master?: string;
}

export function guardTests(g: GuestReader): void {
  const results = (name: string): AgentResult[] => {
    const raw = g.text(`${name}.json`);
    try {
      return (JSON.parse(raw) as { results: AgentResult[] }).results;
    } catch {
      throw new Error(`${name}: no JSON (exit ${g.rc(name)}): ${g.text(`${name}.err`)}`);
    }
  };
  const result = (name: string, id: string): AgentResult => {
    const r = results(name).find((x) => x.id === id);
    if (!r) throw new Error(`${name}: no result ${id}`);
    return r;
  };
  /** IPv4 addresses by interface (those holding any). */
  const addrs = (rel: string): Record<string, string[]> =>
    Object.fromEntries(
      (JSON.parse(g.text(`${rel}.out`)) as AddrRow[])
        .map((r) => [r.ifname, r.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`)] as const)
        .filter(([, a]) => a.length > 0 && !a.every((x) => x.startsWith("127."))),
    );
  const defaultRoutes = (rel: string): string[] =>
    (JSON.parse(g.text(`${rel}.out`)) as RouteRow[]).filter((r) => r.dst === "default").map((r) => `via ${r.gateway} dev ${r.dev}`);
  const masters = (rel: string): Record<string, string> =>
    Object.fromEntries((JSON.parse(g.text(`${rel}.out`)) as LinkRow[]).filter((l) => l.master).map((l) => [l.ifname, l.master!]));
  const received = (rel: string): number => Number(/(\d+) received/.exec(g.text(`${rel}.out`))?.[1] ?? -1);
  /** The host state a refused run must leave as it was (nft counters and set elements' time left aside: they move by themselves). */
  const state = (rel: string) => g.text(`${rel}.out`).replace(/counter packets \d+ bytes \d+/g, "counter").replace(/ expires [\dhms]+/g, "");

  describe("an assignment for another host is refused, and nothing on the host changed", () => {
    it.each([
      ["vmhost", "kbe", "kvm1"],
      ["backend", "kvm1", "kbe"],
    ])("%s: %s's assignment on %s exits 4 with one line naming both hosts; links, addresses, OVS/nft state as before", (role, other, me) => {
      expect(g.rc(`${role}/wrong-host`)).toBe(4);
      const err = g.text(`${role}/wrong-host.err`);
      expect(err.trim().split("\n")).toHaveLength(1);
      expect(err).toContain(`is the assignment of host ${other}, and this host is ${me} (--name); refused, nothing changed`);
      expect(g.text(`${role}/wrong-host.json`)).toBe("");
      expect(g.rc(`${role}/state-after-wrong`)).toBe(0);
      expect(state(`${role}/state-after-wrong`)).toBe(state(`${role}/state-before-wrong`));
      // what was looked at is the real state: the gateway table on kbe, the bridges on kvm1
      expect(state(`${role}/state-before-wrong`)).toContain(role === "backend" ? "table inet netfleet" : "br-secure");
    });
  });

  describe("management link guard (namespaces mA, mB, mC: eth0 holds the address and the default route towards the gateway)", () => {
    it("before: every host holds its address on eth0 with the default route via 10.98.0.254, and its gateway reaches it", () => {
      for (const [x, a] of [["A", "10.98.0.11/24"], ["B", "10.98.0.12/24"], ["C", "10.98.0.13/24"]] as const) {
        expect(addrs(`mgmt/${x}-before-addr`)).toEqual({ eth0: [a] });
        expect(defaultRoutes(`mgmt/${x}-before-route`)).toEqual(["via 10.98.0.254 dev eth0"]);
        expect(received(`mgmt/${x}-before-ping-from-gw`), x).toBe(2);
      }
    });

    it("(a) attack: enslaving eth0 without management is refused naming eth0, its address and route; nothing ran", () => {
      expect(g.rc("mgmt/A-apply")).toBe(3);
      const bond = result("mgmt/A-apply", "kernel-bond[bond0]");
      expect(bond.result).toBe(false);
      expect(bond.comment).toBe(
        "eth0 holds 10.98.0.11/24 and the default route via 10.98.0.254; enslaving it to bond0 would cut this host off its controller; " +
          "set carries_management: true on the uplink to move the address onto the bond, or move it off eth0",
      );
      expect(result("mgmt/A-apply", "vlan-interface[bond0.1090]").comment).toMatch(/^not applied: it depends on bond0, which was refused \(eth0 holds/);
      expect(results("mgmt/A-apply").filter((r) => r.changed || r.commands.length > 0)).toEqual([]);
    });

    it("(a) at the target: eth0 still holds the address and the default route, no bond exists, and the gateway still reaches the host", () => {
      expect(addrs("mgmt/A-after-addr")).toEqual({ eth0: ["10.98.0.11/24"] });
      expect(defaultRoutes("mgmt/A-after-route")).toEqual(["via 10.98.0.254 dev eth0"]);
      expect(g.text("mgmt/A-after-link.out")).not.toContain('"bond0"');
      expect(received("mgmt/A-after-ping-from-gw")).toBe(2);
    });

    it("(b) with management.address: applied; the address and the default route are on bond0 and the gateway reaches the host through it", () => {
      expect(g.rc("mgmt/B-apply"), g.text("mgmt/B-apply.err")).toBe(0);
      const bond = result("mgmt/B-apply", "kernel-bond[bond0]");
      expect(bond).toMatchObject({ result: true, changed: true });
      expect(bond.comment).toMatch(/moved 10\.98\.0\.12\/24 and 1 route\(s\) from eth0 onto bond0; lockout check: 10\.98\.0\.254 answered through bond0/);
      expect(addrs("mgmt/B-after-addr")).toEqual({ bond0: ["10.98.0.12/24"] });
      expect(defaultRoutes("mgmt/B-after-route")).toEqual(["via 10.98.0.254 dev bond0"]);
      expect(masters("mgmt/B-after-link")).toMatchObject({ eth0: "bond0", eth1: "bond0" });
      expect(received("mgmt/B-after-ping-from-gw")).toBe(2);
      // the record of the move is gone once it was checked
      expect(g.text("mgmt/B-state-files.txt")).not.toContain("management-move.json");
    });

    it("(c) a dead path through the bond: the move is undone by the lockout check; address and route back on eth0, the gateway reaches the host again", () => {
      expect(g.rc("mgmt/C-apply")).toBe(3);
      const bond = result("mgmt/C-apply", "kernel-bond[bond0]");
      expect(bond.result).toBe(false);
      expect(bond.comment).toMatch(
        /^moved 10\.98\.0\.13\/24 from eth0 onto bond0, then undone: 10\.98\.0\.254 did not answer through bond0 \(10 pings, \d+ s\); 10\.98\.0\.13\/24 and the routes are back on eth0; 10\.98\.0\.254 answered through eth0 again$/,
      );
      expect(addrs("mgmt/C-after-addr")).toEqual({ eth0: ["10.98.0.13/24"] });
      expect(defaultRoutes("mgmt/C-after-route")).toEqual(["via 10.98.0.254 dev eth0"]);
      expect(masters("mgmt/C-after-link")).toEqual({});
      expect(received("mgmt/C-after-ping-from-gw")).toBe(2);
      // the failure is recorded: the next pass refuses the move until an operator removes the record
      expect(g.text("mgmt/C-state-files.txt").split("\n")).toContain("management-move-failed.json");
    });
  });
}
