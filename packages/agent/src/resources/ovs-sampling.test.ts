import { describe, expect, it } from "vitest";
import { OvsSamplingSpec, ParseError, type PruneSpec } from "@netfleet/shared";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { ovsSampling, pruneSamplingCommands, staleSamplingOf } from "./ovs-sampling.ts";
import { parseSamplingState } from "./ovs-sampling-db.ts";

// Real ovs-vsctl output (OVS 3.1.0), written by __fixtures__/ovs/capture-sampling.sh; SAMPLING.md has its commands.
const state = (name: string) => parseSamplingState(fixture(`ovs/sampling-${name}.json`));
const argvOf = (plan: { commands: { argv: string[] }[] }) => plan.commands.map((c) => c.argv);

/** What the capture put on br-secure: both rows, every packet, the lab's collector. */
const secure: OvsSamplingSpec = {
  kind: "ovs-sampling",
  name: "br-secure",
  sflow: { targets: ["10.99.0.250:6343"], agent: "10.99.0.1", sampling: 1, polling: 1, header: 128 },
  ipfix: { targets: ["10.99.0.250:4739", "10.99.0.251:4739"], sampling: 1, cacheActiveTimeout: 0, cacheMaxFlows: 0 },
};
/** What the capture's update made of br-service's row: sampling 1, polling 1, no agent. */
const service: OvsSamplingSpec = { kind: "ovs-sampling", name: "br-service", sflow: { targets: ["10.99.0.250:6343"], sampling: 1, polling: 1, header: 128 } };
const prune = (sampling: string[] | undefined): PruneSpec => ({
  kind: "prune",
  name: "host",
  keep: { links: [], ovsBridges: ["br-secure", "br-service"], libvirtNetworks: [], dnsmasq: [], nftTable: false, ...(sampling ? { sampling } : {}) },
});

describe("sFlow / IPFIX rows (real ovs-vsctl --format=json)", () => {
  it("reads each bridge's references and the rows, with their owner marks; an empty optional column is undefined", () => {
    const s = state("mixed");
    const secureRefs = s.bridges.get("br-secure")!;
    expect(s.sflow.get(secureRefs.sflow!)).toMatchObject({ agent: "10.99.0.1", targets: ["10.99.0.250:6343"], sampling: 1, polling: 1, header: 128, externalIds: { "netfleet-owner": "fixture" } });
    expect(s.ipfix.get(secureRefs.ipfix!)).toMatchObject({ targets: ["10.99.0.250:4739", "10.99.0.251:4739"], sampling: 1, cacheActiveTimeout: 0, cacheMaxFlows: 0 });
    const foreign = s.sflow.get(s.bridges.get("br-other")!.sflow!)!;
    expect(foreign).toEqual({ uuid: foreign.uuid, targets: ["192.0.2.9:6343"], externalIds: {} });
    expect(state("none").sflow.size).toBe(0);
  });

  it("refuses output that is not the three tables", () => {
    expect(() => parseSamplingState(fixture("ovs/sampling-none.json").split("\n").slice(0, 2).join("\n"))).toThrow(ParseError);
    expect(() => parseSamplingState("{oops\n{}\n{}")).toThrow(/line 1 is not an OVSDB table/);
  });

  it("the spec's schema wants at least one of sflow and ipfix, and ip:port targets", () => {
    expect(OvsSamplingSpec.safeParse({ kind: "ovs-sampling", name: "br-secure" }).success).toBe(false);
    expect(OvsSamplingSpec.safeParse({ ...service, sflow: { ...service.sflow, targets: ["collector:6343"] } }).success).toBe(false);
    expect(OvsSamplingSpec.safeParse(secure).success).toBe(true);
  });
});

describe("ovs-sampling plan", () => {
  it("creates both rows, marked ours, and references them from the bridge in one transaction", () => {
    const plan = ovsSampling.plan(secure, state("none"), ctx);
    expect(argvOf(plan)).toEqual([
      [
        "ovs-vsctl", "--timeout=30",
        "--", "--id=@sflow", "create", "sFlow", 'targets=["10.99.0.250:6343"]', "sampling=1", "polling=1", "header=128", "agent=10.99.0.1", "external_ids:netfleet-owner=fixture", "--", "set", "Bridge", "br-secure", "sflow=@sflow",
        "--", "--id=@ipfix", "create", "IPFIX", 'targets=["10.99.0.250:4739","10.99.0.251:4739"]', "sampling=1", "cache_active_timeout=0", "cache_max_flows=0", "external_ids:netfleet-owner=fixture", "--", "set", "Bridge", "br-secure", "ipfix=@ipfix",
      ],
    ]);
    expect(Object.keys(plan.changes)).toEqual(["sflow", "ipfix"]);
    expect(plan.changes.sflow).toEqual({ old: null, new: 'targets=["10.99.0.250:6343"] sampling=1 polling=1 header=128 agent=10.99.0.1' });
  });

  it("converged rows plan nothing", () => {
    expect(ovsSampling.plan(secure, state("mixed"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("a drifted row of ours is set by uuid, a column no longer asked for cleared; after those very commands (captured) nothing is left", () => {
    const mixed = state("mixed");
    const uuid = mixed.bridges.get("br-service")!.sflow!;
    const plan = ovsSampling.plan(service, mixed, ctx);
    expect(argvOf(plan)).toEqual([["ovs-vsctl", "--timeout=30", "--", "set", "sFlow", uuid, "sampling=1", "polling=1", "--", "clear", "sFlow", uuid, "agent"]]);
    expect(plan.changes).toEqual({ "sflow sampling": { old: "400", new: "1" }, "sflow polling": { old: "30", new: "1" }, "sflow agent": { old: "10.99.0.1", new: null } });
    expect(ovsSampling.plan(service, state("updated"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("a protocol no longer asked for is dereferenced (OVSDB deletes the row; the capture shows it gone)", () => {
    const { ipfix: _drop, ...sflowOnly } = secure;
    const plan = ovsSampling.plan(sflowOnly, state("mixed"), ctx);
    expect(argvOf(plan)).toEqual([["ovs-vsctl", "--timeout=30", "--", "clear", "Bridge", "br-secure", "ipfix"]]);
    expect(state("updated").ipfix.size).toBe(0);
  });

  it("never touches a bridge or a row that is not ours: blocked, naming the command that hands it over", () => {
    const other = ovsSampling.plan({ ...service, name: "br-other" }, state("mixed"), ctx);
    expect(other).toMatchObject({ commands: [], blocked: "bridge br-other is not managed by netfleet; its sFlow and IPFIX settings are left alone" });
    // br-service referencing the operator's row (br-other's): the plan refuses to change it.
    const s = state("mixed");
    const foreign = s.bridges.get("br-other")!.sflow!;
    s.bridges.set("br-service", { ...s.bridges.get("br-service")!, sflow: foreign });
    const plan = ovsSampling.plan(service, s, ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toBe(`bridge br-service's sflow column references a sFlow row netfleet did not create (targets=["192.0.2.9:6343"]); nothing was changed. To hand it over run: ovs-vsctl set sFlow ${foreign} external_ids:netfleet-owner=fixture`);
  });

  it("stable covers the bridge's own rows only", () => {
    const a = ovsSampling.stable!(state("mixed"), secure);
    const b = ovsSampling.stable!(state("updated"), secure);
    expect(a).not.toEqual(b); // br-secure lost its IPFIX row
    expect(ovsSampling.stable!(state("updated"), service)).not.toEqual(ovsSampling.stable!(state("mixed"), service));
    expect(ovsSampling.stable!(state("none"), secure)).toMatchObject({ sflow: null, ipfix: null });
  });
});

describe("prune of sampling", () => {
  it("clears our rows on kept bridges without an ovs-sampling resource; the operator's row and kept ones stay", () => {
    const s = state("mixed");
    expect(staleSamplingOf(prune(["br-secure"]), s, "fixture")).toEqual([{ bridge: "br-service", protos: ["sflow"] }]);
    const all = staleSamplingOf(prune(undefined), s, "fixture");
    expect(all).toEqual([{ bridge: "br-secure", protos: ["sflow", "ipfix"] }, { bridge: "br-service", protos: ["sflow"] }]);
    const changes = {};
    expect(pruneSamplingCommands(all, changes, ctx).map((c) => c.argv)).toEqual([
      ["ovs-vsctl", "--timeout=30", "--", "clear", "Bridge", "br-secure", "sflow", "--", "clear", "Bridge", "br-secure", "ipfix", "--", "clear", "Bridge", "br-service", "sflow"],
    ]);
    expect(Object.keys(changes)).toEqual(["sflow br-secure", "ipfix br-secure", "sflow br-service"]);
    expect(staleSamplingOf(prune(undefined), state("cleared"), "fixture")).toEqual([]);
    expect(pruneSamplingCommands(undefined, {}, ctx)).toEqual([]);
  });
});
