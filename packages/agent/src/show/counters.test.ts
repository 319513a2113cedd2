import { describe, expect, it } from "vitest";
import { CountersSummary, HostView, ShowReply, counterWarnings, encodeMessage, summariseCounters } from "@netfleet/shared";
import { CounterBaseline, MIN_BASELINE_MS, answerShow } from "../fleet/show.ts";
import { fixture } from "../resources/fixtures.ts";
import { Toolbox } from "../tools.ts";
import { loadCapture } from "./fixtures.ts";
import { parseBondShow, parseInterfaceStats, parseLacpShow } from "./parse-counters.ts";
import { readHost, showArgv } from "./read.ts";
import { renderHostView } from "./render.ts";
import { buildHostView } from "./view.ts";

// Real output of Open vSwitch 3.1.0 (userspace datapath), captured as __fixtures__/counters/capture.sh says:
// br-a holds bond0 (a1, a2; balance-tcp, LACP active) facing br-b's bond1, a VM-like port vnet0 and inta.
const counters = (name: string) => fixture(`../../show/__fixtures__/counters/${name}`);

describe("counters: parsing what OVS prints", () => {
  it("Interface statistics: known traffic from the VM (20 echo requests of 1042-byte frames) is what vnet0's rx gained", () => {
    const before = parseInterfaceStats(counters("iface-stats-before.json")).get("vnet0")!;
    const after = parseInterfaceStats(counters("iface-stats-after.json")).get("vnet0")!;
    expect(after.counters!.rxPackets - before.counters!.rxPackets).toBe(20);
    expect(after.counters!.rxBytes - before.counters!.rxBytes).toBe(20 * 1042);
    // The echo replies went back out through vnet0: the switch's tx.
    expect(after.counters!.txPackets - before.counters!.txPackets).toBe(20);
    expect(after).toMatchObject({ linkState: "up", adminState: "up" });
  });

  it("Interface link state: a member whose partner end is down is link_state down, its resets counted", () => {
    const stats = parseInterfaceStats(counters("iface-stats-down.json"));
    expect(stats.get("a2")).toMatchObject({ linkState: "down", adminState: "up", linkResets: 1 });
    expect(stats.get("a1")).toMatchObject({ linkState: "up", linkResets: 0 });
    expect([...stats.keys()].sort()).toEqual(["a1", "a2", "b1", "b2", "br-a", "br-b", "inta", "vnet0"]);
  });

  it("bond/show: every bond, its lacp_status, active member, members enabled or not (hash lines skipped)", () => {
    const all = parseBondShow(counters("bond-show-all.txt"));
    expect([...all.keys()]).toEqual(["bond2", "bond1", "bond0"]);
    expect(all.get("bond2")).toMatchObject({ lacpStatus: "off" });
    expect(all.get("bond0")).toEqual({
      lacpStatus: "negotiated",
      activeMember: "a1",
      members: [
        { name: "a1", enabled: true, mayEnable: true },
        { name: "a2", enabled: true, mayEnable: true },
      ],
    });
    const down = parseBondShow(counters("bond-show-down.txt")).get("bond0")!;
    expect(down.members).toEqual([
      { name: "a1", enabled: true, mayEnable: true },
      { name: "a2", enabled: false, mayEnable: false },
    ]);
    const allDown = parseBondShow(counters("bond-show-alldown.txt")).get("bond0")!;
    expect(allDown.lacpStatus).toBe("configured");
    expect(allDown.activeMember).toBeUndefined();
    expect(allDown.members.every((m) => !m.enabled)).toBe(true);
    expect(parseBondShow("").size).toBe(0);
  });

  it("lacp/show: each member's status and the partner's state words; a member without a partner is defaulted", () => {
    const down = parseLacpShow(counters("lacp-show-down.txt")).get("bond0")!;
    expect(down.status).toEqual(["active", "negotiated"]);
    expect(down.members.get("a1")).toEqual({
      status: ["current", "attached"],
      actorState: ["activity", "aggregation", "synchronized", "collecting", "distributing"],
      partnerState: ["activity", "aggregation", "synchronized", "collecting", "distributing"],
    });
    expect(down.members.get("a2")).toMatchObject({ status: ["defaulted", "detached"], partnerState: [] });
    expect(parseLacpShow(counters("lacp-show-alldown.txt")).get("bond0")!.status).toEqual(["active"]);
    expect([...parseLacpShow(counters("lacp-show-all.txt")).keys()].sort()).toEqual(["bond0", "bond1"]);
  });
});

describe("counters: a host's view and its summary (whole show captures of the same OVS)", () => {
  const up = loadCapture("cntcap");
  const down = loadCapture("cntcap-down");

  it("reads statistics always, bond/show and lacp/show only as OVS has bonds and LACP; all read-only", async () => {
    const raw = await readHost({ host: "cntcap", runner: up.runner, tools: up.tools, files: up.files, now: () => up.at });
    expect(raw).toEqual(up.raw);
    const argv = up.runner.calls.map((c) => c.argv);
    expect(argv).toContainEqual(["ovs-appctl", "--timeout=10", "-t", "/tmp/cnt-cap/ovs/ovs-vswitchd.ctl", "bond/show"]);
    expect(argv).toContainEqual(["ovs-appctl", "--timeout=10", "-t", "/tmp/cnt-cap/ovs/ovs-vswitchd.ctl", "lacp/show"]);
    expect(argv).toContainEqual(showArgv.ovsStats(up.tools));
    expect(up.runner.mutatingCalls).toEqual([]);
    // Without a private run dir: ovs-appctl's own default target.
    expect(showArgv.bondShow(new Toolbox())).toEqual(["ovs-appctl", "--timeout=10", "bond/show"]);
  });

  it("each OVS Interface carries its statistics and link state, each bond its members and their LACP", () => {
    const view = buildHostView(up.raw);
    expect(HostView.parse(view)).toEqual(view);
    const brA = view.bridges!.find((b) => b.name === "br-a")!;
    const bond = brA.ports.find((p) => p.name === "bond0")!;
    expect(bond.bond).toMatchObject({ lacpStatus: "negotiated", activeMember: "a1" });
    expect(bond.bond!.members.map((m) => [m.name, m.enabled, m.lacpStatus?.join(" ")])).toEqual([
      ["a1", true, "current attached"],
      ["a2", true, "current attached"],
    ]);
    const vnet0 = brA.ports.find((p) => p.name === "vnet0")!.interfaces[0]!;
    expect(vnet0).toMatchObject({ linkState: "up", adminState: "up" });
    expect(vnet0.counters!.rxPackets).toBeGreaterThan(0);
    // Ports that are not bonds have no bond state.
    expect(brA.ports.filter((p) => p.bond).map((p) => p.name)).toEqual(["bond0"]);
    expect(view.counters).toMatchObject({ interfaces: 13, errors: 0, rising: [] });
    expect(view.counters!.sinceS).toBeUndefined();
  });

  it("a member down: disabled in the view, down in the summary, a status warning; the drops of ports that are down do not rise", () => {
    const first = summariseCounters(buildHostView(up.raw));
    const view = buildHostView(down.raw);
    const { summary } = summariseCounters(view, first.sample);
    expect(CountersSummary.parse(summary)).toEqual(summary);
    expect(summary.sinceS).toBe(Math.round((down.at - up.at) / 1000));
    expect(summary.bonds).toEqual([
      { name: "bond0", bridge: "br-a", lacp: "negotiated", membersUp: ["a1"], membersDown: ["a2"] },
      { name: "bond1", bridge: "br-b", lacp: "negotiated", membersUp: ["b1"], membersDown: ["b2"] },
    ]);
    // vnet0 (its guest end down) and the bridges' own ports dropped the 10 flooded broadcasts: expected, not rising.
    expect(summary.rising).toEqual([]);
    expect(view.bridges!.find((b) => b.name === "br-a")!.ports.find((p) => p.name === "vnet0")!.interfaces[0]).toMatchObject({ linkState: "down" });
    expect(counterWarnings(summary)).toEqual([
      { id: "counters-bond", message: "bond br-a/bond0: member a2 down, 1 of 2 up" },
      { id: "counters-bond", message: "bond br-b/bond1: member b2 down, 1 of 2 up" },
    ]);
    const text = renderHostView({ ...view, counters: summary });
    expect(text).toContain("OVS bonds\n  br-a/bond0: balance-tcp, lacp_status negotiated, 1 of 2 members enabled, active a1\n");
    expect(text).toContain("    member a2: disabled (may_enable false), lacp defaulted detached, partner (none)\n");
    expect(text).toMatch(/\n {2}br-a {4}a2 {9}down /);
    expect(text).toContain("\n  bond br-a/bond0: a2 down\n");
  });

  it("drops rising on a port that is up (10 echo replies over vnet0's MTU dropped): in `rising`, and a warning", () => {
    const before = loadCapture("cntcap-mtu-before");
    const after = loadCapture("cntcap-mtu-after");
    const first = summariseCounters(buildHostView(before.raw));
    const { summary } = summariseCounters(buildHostView(after.raw), first.sample);
    expect(summary.rising).toEqual([{ name: "vnet0", bridge: "br-a", errors: 0, drops: 10 }]);
    expect(summary.bonds.every((b) => b.membersDown.length === 0)).toBe(true);
    expect(counterWarnings(summary)).toEqual([{ id: "counters-rising", message: `+0 errors, +10 drops in ${summary.sinceS} s on vnet0 (+0 errors, +10 drops)` }]);
  });

  it("the agent's baseline: a second read soon after compares against the first, a later one moves the baseline on", () => {
    const baseline = new CounterBaseline();
    const a = buildHostView(up.raw);
    const b = buildHostView(down.raw);
    expect(baseline.summarise(a).sinceS).toBeUndefined();
    const soon = { ...b, at: new Date(Date.parse(a.at) + MIN_BASELINE_MS - 1).toISOString() };
    expect(baseline.summarise(soon).sinceS).toBe(Math.round((MIN_BASELINE_MS - 1) / 1000));
    expect(baseline.summarise(b).sinceS).toBe(Math.round((down.at - up.at) / 1000));
    // b is now the baseline: the same counters again, nothing rose.
    expect(baseline.summarise(b)).toMatchObject({ sinceS: 0, rising: [] });
  });

  it("a show request with scope counters is answered with the summary only, no view", async () => {
    const baseline = new CounterBaseline();
    const who = { site: "lab", host: "cntcap", log: () => {} };
    const ctx = { current: undefined, observe: async () => buildHostView(up.raw) };
    const first = ShowReply.parse(await answerShow(who, ctx, "nf.lab.show.cntcap", encodeMessage({ kind: "show", site: "lab", host: "cntcap", scope: "counters" }), baseline));
    expect(first.view).toBeUndefined();
    expect(first.counters).toMatchObject({ interfaces: 13, bonds: [{ name: "bond0" }, { name: "bond1" }] });
    const later = { current: undefined, observe: async () => buildHostView(down.raw) };
    const whole = ShowReply.parse(await answerShow(who, later, "nf.lab.show.cntcap", encodeMessage({ kind: "show", site: "lab", host: "cntcap" }), baseline));
    expect(whole.counters).toBeUndefined();
    expect(whole.view!.counters).toMatchObject({ sinceS: Math.round((down.at - up.at) / 1000), bonds: [{ membersDown: ["a2"] }, { membersDown: ["b2"] }] });
  });
});
