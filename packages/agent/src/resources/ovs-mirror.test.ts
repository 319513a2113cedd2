import { describe, expect, it } from "vitest";
import type { OvsMirrorSpec, PruneSpec } from "@netfleet/shared";
import { RecordingRunner } from "../exec/recording-runner.ts";
import { Toolbox } from "../tools.ts";
import { fixture, fixtureContext as ctx, noFiles } from "./fixtures.ts";
import { parseOvsState } from "./ovsdb.ts";
import { mirrorsObserveArgv, parseMirrors } from "./ovs-mirror-db.ts";
import { ovsMirror, type MirrorObservation } from "./ovs-mirror.ts";
import { observeStaleMirrors, pruneMirrorsCommands } from "./ovs-mirror-prune.ts";
import type { Changes, ObserveContext } from "./types.ts";

// Real output of a private OVS 3.1 (__fixtures__/ovs-mirror/capture.sh): br-lan with vnet1..3, the ports of
// VMs 52:54:00:00:00:01..03 (libvirt's attached-mac); mirror `tap` copies vm1 both ways to vm2's port.
const observed = (name: string): MirrorObservation => ({
  ovs: parseOvsState(fixture(`ovs-mirror/${name}-ovs.json`)),
  mirrors: parseMirrors(fixture(`ovs-mirror/${name}-mirrors.json`)),
});
const tap: OvsMirrorSpec = { kind: "ovs-mirror", name: "tap", bridge: "br-lan", sourceMacs: ["52:54:00:00:00:01"], direction: "both", output: { vmMac: "52:54:00:00:00:02" } };
const gre: OvsMirrorSpec = { kind: "ovs-mirror", name: "tapg", bridge: "br-lan", direction: "both", output: { tunnel: { port: "mr-tapg", type: "gre", remoteIp: "192.0.2.10", key: 7 } } };
const erspan: OvsMirrorSpec = {
  kind: "ovs-mirror",
  name: "tape",
  bridge: "br-lan",
  sourceMacs: ["52:54:00:00:00:01"],
  direction: "egress",
  output: { tunnel: { port: "mr-tape", type: "erspan", remoteIp: "192.0.2.11", key: 1, erspanVersion: 1, erspanIndex: 3 } },
};
const argvs = (spec: OvsMirrorSpec, o: MirrorObservation) => ovsMirror.plan(spec, o, ctx).commands.map((c) => c.argv);
const TAP_COLUMNS = ["select_all=false", "select_src_port=@p1", "select_dst_port=@p1", "output_port=@p0"];
const TAP_REFS = ["--", "--id=@p0", "get", "Port", "vnet2", "--", "--id=@p1", "get", "Port", "vnet1"];
/** After a Mirror row is created, changed or removed: OVS applies it to new datapath flows only (ovs-mirror-revalidate.ts). */
const PURGE = ["ovs-appctl", "--timeout=10", "revalidator/purge"];

describe("parseMirrors (ovs-vsctl --format=json list Bridge, Mirror)", () => {
  it("reads each row with its bridge, port references and owner mark", () => {
    expect(parseMirrors(fixture("ovs-mirror/none-mirrors.json"))).toEqual([]);
    const [row] = parseMirrors(fixture("ovs-mirror/converged-mirrors.json"));
    expect(row).toEqual({
      uuid: "9f95fe8f-110a-4626-b320-7c06e91eda71",
      name: "tap",
      bridge: "br-lan",
      selectAll: false,
      selectSrcPorts: ["3877ea68-ce55-4fbc-83bd-8108aea61170"],
      selectDstPorts: ["3877ea68-ce55-4fbc-83bd-8108aea61170"],
      outputPort: "18aac7f5-ea7b-4246-a142-f5c9dba9af6e",
      externalIds: { "netfleet-owner": "fixture" },
    });
    expect(parseMirrors(fixture("ovs-mirror/tunnels-mirrors.json")).map((m) => [m.name, m.selectAll, m.bridge])).toEqual([
      ["tape", false, "br-lan"],
      ["tapg", true, "br-lan"],
    ]);
  });

  it("refuses output that is not the two tables", () => {
    expect(() => parseMirrors(fixture("ovs-mirror/none-ovs.json"))).toThrow(/expected 2 tables/);
    expect(() => parseMirrors("nope\n")).toThrow(/not an OVSDB table/);
  });
});

describe("ovs-mirror plan", () => {
  it("creates the row on a bridge without it: the VM ports found by attached-mac, marked ours, added to the bridge", () => {
    const plan = ovsMirror.plan(tap, observed("none"), ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["ovs-vsctl", "--timeout=30", ...TAP_REFS, "--", "--id=@m", "create", "Mirror", "name=tap", ...TAP_COLUMNS, "external_ids:netfleet-owner=fixture", "--", "add", "Bridge", "br-lan", "mirrors", "@m"],
      PURGE,
    ]);
    expect(plan.changes).toEqual({ "mirror tap": { old: null, new: { bridge: "br-lan", selectAll: false, src: ["vnet1"], dst: ["vnet1"], output: "vnet2" } } });
  });

  it("already converged → no commands (also beside an operator's own mirror, which stays untouched)", () => {
    expect(ovsMirror.plan(tap, observed("converged"), ctx)).toEqual({ changes: {}, commands: [] });
    expect(ovsMirror.plan(tap, observed("foreign"), ctx)).toEqual({ changes: {}, commands: [] });
    expect(ovsMirror.plan(gre, observed("tunnels"), ctx)).toEqual({ changes: {}, commands: [] });
    expect(ovsMirror.plan(erspan, observed("tunnels"), ctx)).toEqual({ changes: {}, commands: [] });
  });

  it("a row of that name without our mark is refused, nothing run", () => {
    const plan = ovsMirror.plan({ ...tap, name: "ops" }, observed("foreign"), ctx);
    expect(plan.commands).toEqual([]);
    expect(plan.blocked).toMatch(/^mirror ops exists on br-lan and is not managed by netfleet; to hand it over run: ovs-vsctl set Mirror [0-9a-f-]{36} external_ids:netfleet-owner=fixture$/);
  });

  it("drift (selection and output edited by hand) is set back on the same row", () => {
    const o = observed("drift");
    const plan = ovsMirror.plan(tap, o, ctx);
    expect(plan.changes).toEqual({ "mirror tap dst": { old: [], new: ["vnet1"] }, "mirror tap output": { old: "vnet3", new: "vnet2" } });
    expect(plan.commands.map((c) => c.argv)).toEqual([["ovs-vsctl", "--timeout=30", ...TAP_REFS, "--", "set", "Mirror", o.mirrors[0]!.uuid, ...TAP_COLUMNS], PURGE]);
  });

  it("direction egress selects only what the VM sends (select_src_port), ingress only what it receives", () => {
    const o = observed("converged");
    const uuid = o.mirrors[0]!.uuid;
    expect(argvs({ ...tap, direction: "egress" }, o)).toEqual([["ovs-vsctl", "--timeout=30", ...TAP_REFS, "--", "set", "Mirror", uuid, "select_all=false", "select_src_port=@p1", "select_dst_port=[]", "output_port=@p0"], PURGE]);
    expect(argvs({ ...tap, direction: "ingress" }, o)).toEqual([["ovs-vsctl", "--timeout=30", ...TAP_REFS, "--", "set", "Mirror", uuid, "select_all=false", "select_src_port=[]", "select_dst_port=@p1", "output_port=@p0"], PURGE]);
  });

  it("no row where the capture VM has no port, or no source VM has one: removed as a VM lifecycle change", () => {
    const o = observed("converged");
    const away = ovsMirror.plan({ ...tap, output: { vmMac: "52:54:00:00:00:09" } }, o, ctx);
    expect(away.commands.map((c) => c.argv)).toEqual([["ovs-vsctl", "--timeout=30", "--", "remove", "Bridge", "br-lan", "mirrors", o.mirrors[0]!.uuid], PURGE]);
    expect(away).toMatchObject({ lifecycle: true, comment: "no mirror here: the capture VM 52:54:00:00:00:09 has no port on br-lan here" });
    expect(ovsMirror.plan({ ...tap, sourceMacs: ["52:54:00:00:00:08"] }, observed("none"), ctx)).toEqual({ changes: {}, commands: [], comment: "no mirror here: no source VM has a port on br-lan here" });
  });

  it("absent (netfleet plan): no bridge yet, so no row; says why", () => {
    expect(ovsMirror.plan(tap, ovsMirror.absent(tap), ctx)).toEqual({ changes: {}, commands: [], comment: "no mirror here: bridge br-lan is not on this host" });
  });

  it("a GRE or ERSPAN output: the tunnel port created with OVS's options and our mark, in the row's transaction", () => {
    expect(argvs(gre, observed("none"))).toEqual([
      [
        "ovs-vsctl", "--timeout=30",
        "--", "add-port", "br-lan", "mr-tapg", "--", "set", "Interface", "mr-tapg", "type=gre", "options:key=7", "options:remote_ip=192.0.2.10", "--", "set", "Port", "mr-tapg", "external_ids:netfleet-mirror=fixture",
        "--", "--id=@p0", "get", "Port", "mr-tapg",
        "--", "--id=@m", "create", "Mirror", "name=tapg", "select_all=true", "select_src_port=[]", "select_dst_port=[]", "output_port=@p0", "external_ids:netfleet-owner=fixture", "--", "add", "Bridge", "br-lan", "mirrors", "@m",
      ],
      PURGE,
    ]);
    // The key changed in the inventory: the options are replaced as a whole, the row stays (no Mirror change, no purge).
    expect(argvs({ ...gre, output: { tunnel: { port: "mr-tapg", type: "gre", remoteIp: "192.0.2.10", key: 8 } } }, observed("tunnels"))).toEqual([
      ["ovs-vsctl", "--timeout=30", "--", "clear", "Interface", "mr-tapg", "options", "--", "set", "Interface", "mr-tapg", "type=gre", "options:key=8", "options:remote_ip=192.0.2.10"],
    ]);
  });

  it("a port of the tunnel's name that is not ours is refused; a capture-VM mirror drops its old tunnel port", () => {
    const o = observed("tunnels");
    o.ovs.ports.get("mr-tapg")!.externalIds = {};
    expect(ovsMirror.plan(gre, o, ctx).blocked).toBe("port mr-tapg exists and is not a mirror port of netfleet; refusing to use it as the output of mirror tapg");
    const now = observed("tunnels");
    const plan = ovsMirror.plan({ ...gre, sourceMacs: ["52:54:00:00:00:01"], output: { vmMac: "52:54:00:00:00:02" } }, now, ctx);
    expect(plan.commands[0]!.argv).toEqual([
      "ovs-vsctl", "--timeout=30", "--", "--if-exists", "del-port", "mr-tapg",
      ...TAP_REFS, "--", "set", "Mirror", now.mirrors.find((m) => m.name === "tapg")!.uuid, ...TAP_COLUMNS,
    ]);
    expect(plan.commands[1]!.argv).toEqual(PURGE);
  });
});

describe("prune: mirrors and mirror ports of ours no longer kept", () => {
  const tools = new Toolbox();
  const observeCtx = (runner: RecordingRunner): ObserveContext => ({ ...ctx, ...noFiles, read: async (argv, o) => runner.run({ argv, mutating: false }, o) });
  const keep = (ovsMirrors?: string[]): PruneSpec => ({ kind: "prune", name: "host", keep: { links: [], ovsBridges: ["br-lan"], libvirtNetworks: [], dnsmasq: [], nftTable: false, ...(ovsMirrors ? { ovsMirrors } : {}) } });

  it("removes our rows and tunnel ports not kept, leaves the kept ones and an operator's", async () => {
    const runner = new RecordingRunner().reply(mirrorsObserveArgv({ owner: "fixture", tools }), { stdout: fixture("ovs-mirror/tunnels-mirrors.json") });
    const stale = await observeStaleMirrors(keep(["tapg"]), observeCtx(runner), parseOvsState(fixture("ovs-mirror/tunnels-ovs.json")));
    expect(stale).toEqual({ rows: [{ uuid: "f9f40fc1-9680-47c2-9b3f-ed8927c4f96c", name: "tape", bridge: "br-lan" }], ports: ["mr-tape"] });
    const changes: Changes = {};
    expect(pruneMirrorsCommands(stale, changes, ctx).map((c) => c.argv)).toEqual([
      ["ovs-vsctl", "--timeout=30", "--", "remove", "Bridge", "br-lan", "mirrors", "f9f40fc1-9680-47c2-9b3f-ed8927c4f96c", "--", "--if-exists", "del-port", "mr-tape"],
      PURGE,
    ]);
    // only a tunnel port of ours left over (no row): no purge
    expect(pruneMirrorsCommands({ rows: [], ports: ["mr-old"] }, {}, ctx).map((c) => c.argv)).toEqual([["ovs-vsctl", "--timeout=30", "--", "--if-exists", "del-port", "mr-old"]]);
    expect(changes).toEqual({ "ovs-mirror tape": { old: "present", new: null }, "port mr-tape": { old: "present", new: null } });

    const foreign = new RecordingRunner().reply(mirrorsObserveArgv({ owner: "fixture", tools }), { stdout: fixture("ovs-mirror/foreign-mirrors.json") });
    expect(await observeStaleMirrors(keep(["tap"]), observeCtx(foreign), parseOvsState(fixture("ovs-mirror/foreign-ovs.json")))).toBeUndefined();
  });

  it("reads nothing when the assignment does not say which mirrors it keeps (an older controller)", async () => {
    const runner = new RecordingRunner();
    expect(await observeStaleMirrors(keep(), observeCtx(runner), parseOvsState(fixture("ovs-mirror/tunnels-ovs.json")))).toBeUndefined();
    expect(runner.calls).toEqual([]);
  });
});
