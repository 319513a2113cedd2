/**
 * The ovs-mirror resource against a real Open vSwitch (no lab: one scratch
 * network namespace with its own ovsdb-server and ovs-vswitchd on the
 * userspace datapath, prefix nfmiro): each spec applied through the engine,
 * then observed again with nothing left to do (idempotence on the real
 * database, not on fixtures); a GRE and an ERSPAN output port created with
 * OVS's options and our mark; drift by hand set back; an operator's mirror
 * of the same name refused and left as it was; prune removing what is no
 * longer kept and nothing else. Traffic through a mirror is mirror.test.ts's.
 * Needs root and openvswitch-switch.
 */
import { execa } from "execa";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExecaRunner, read, reconcile, Toolbox } from "@netfleet/agent";
import type { OvsMirrorSpec, PruneSpec, ResourceSpec } from "@netfleet/shared";

const isRoot = process.getuid?.() === 0;
const NS = "nfmiro-ovs";
const dir = mkdtempSync(join(tmpdir(), "nfmiro-"));
const db = join(dir, "db.sock");
const runner = new ExecaRunner({ timeoutMs: 30_000 });
// ovsRundir: the scratch ovs-vswitchd's control socket (dir/ovs-vswitchd.ctl), which ovs-mirror's revalidator/purge reaches
const tools = new Toolbox({ ovsDb: db, ovsRundir: dir, runDir: join(dir, "run") });
const OWNER = "miro";

async function must(argv: string[]): Promise<string> {
  const r = await runner.run(read(...argv), { allowFailure: true });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return r.stdout;
}
const vsctl = (...args: string[]) => must(["ovs-vsctl", `--db=unix:${db}`, "--timeout=10", ...args]);
const ns = (...argv: string[]) => must(["ip", "netns", "exec", NS, ...argv]);
const pass = (resources: ResourceSpec[], check = false) => reconcile(resources, { runner, tools, owner: OWNER, check, host: { readFile: async () => undefined, listDir: async () => undefined, processArgv: async () => undefined } });
const mirrorsTable = async () => JSON.parse(await vsctl("--format=json", "--columns=name,select_all,external_ids", "list", "Mirror")) as { data: unknown[][] };

const mac = (i: number) => `52:54:00:00:00:0${i}`;
const tap: OvsMirrorSpec = { kind: "ovs-mirror", name: "tap", bridge: "br-lan", sourceMacs: [mac(1)], direction: "both", output: { vmMac: mac(2) } };
const gre: OvsMirrorSpec = { kind: "ovs-mirror", name: "tapg", bridge: "br-lan", direction: "both", output: { tunnel: { port: "mr-tapg", type: "gre", remoteIp: "192.0.2.10", key: 7 } } };
const erspan: OvsMirrorSpec = { kind: "ovs-mirror", name: "tape", bridge: "br-lan", sourceMacs: [mac(1), mac(3)], direction: "ingress", output: { tunnel: { port: "mr-tape", type: "erspan", remoteIp: "192.0.2.11", key: 5, erspanVersion: 2, erspanDir: 1, erspanHwid: 4 } } };
const prune = (ovsMirrors: string[]): PruneSpec => ({ kind: "prune", name: "host", keep: { links: [], ovsBridges: ["br-lan"], libvirtNetworks: [], dnsmasq: [], nftTable: true, ovsMirrors } });

describe.skipIf(!isRoot)("ovs-mirror on a real Open vSwitch (netns nfmiro-ovs)", () => {
  const pids: number[] = [];
  beforeAll(async () => {
    await execa("ip", ["netns", "del", NS], { reject: false });
    await must(["ip", "netns", "add", NS]);
    await must(["ovsdb-tool", "create", join(dir, "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema"]);
    const env = ["env", `OVS_RUNDIR=${dir}`, `OVS_LOGDIR=${dir}`, `OVS_DBDIR=${dir}`];
    await ns(...env, "ovsdb-server", join(dir, "conf.db"), `--remote=punix:${db}`, `--pidfile=${dir}/ovsdb-server.pid`, `--unixctl=${dir}/ovsdb-server.ctl`, `--log-file=${dir}/ovsdb-server.log`, "--detach", "--no-chdir", "-vconsole:off");
    pids.push(Number((await must(["cat", `${dir}/ovsdb-server.pid`])).trim()));
    await vsctl("--no-wait", "init");
    await ns(...env, "ovs-vswitchd", `unix:${db}`, `--pidfile=${dir}/ovs-vswitchd.pid`, `--unixctl=${dir}/ovs-vswitchd.ctl`, `--log-file=${dir}/ovs-vswitchd.log`, "--detach", "--no-chdir", "-vconsole:off");
    pids.push(Number((await must(["cat", `${dir}/ovs-vswitchd.pid`])).trim()));
    await vsctl("add-br", "br-lan", "--", "set", "Bridge", "br-lan", "datapath_type=netdev", "fail_mode=secure", `external_ids:netfleet-owner=${OWNER}`);
    for (const i of [1, 2, 3]) {
      await must(["ip", "-n", NS, "link", "add", `vnet${i}`, "type", "veth", "peer", "name", `vm${i}`]);
      await must(["ip", "-n", NS, "link", "set", `vnet${i}`, "up"]);
      await vsctl("add-port", "br-lan", `vnet${i}`, "--", "set", "Interface", `vnet${i}`, `external_ids:attached-mac="${mac(i)}"`);
    }
  }, 60_000);

  afterAll(async () => {
    for (const pid of pids.reverse()) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        /* already gone */
      }
    }
    await execa("ip", ["netns", "del", NS], { reject: false });
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it("each mirror applied, then observed again with nothing to do; the rows and tunnel ports carry OVS's values and our marks", async () => {
    const first = await pass([tap, gre, erspan]);
    expect(first.map((r) => [r.id, r.result, r.changed, r.error])).toEqual([
      ["ovs-mirror[tap]", true, true, undefined],
      ["ovs-mirror[tapg]", true, true, undefined],
      ["ovs-mirror[tape]", true, true, undefined],
    ]);
    const again = await pass([tap, gre, erspan]);
    expect(again.map((r) => [r.id, r.result, r.changed])).toEqual([
      ["ovs-mirror[tap]", true, false],
      ["ovs-mirror[tapg]", true, false],
      ["ovs-mirror[tape]", true, false],
    ]);
    expect((await mirrorsTable()).data.map((r) => r.slice(0, 2)).sort()).toEqual([["tap", false], ["tape", false], ["tapg", true]]);
    expect((await vsctl("get", "Mirror", "tap", "external_ids")).trim()).toBe(`{netfleet-owner=${OWNER}}`);
    expect((await vsctl("get", "Interface", "mr-tapg", "type", "options")).trim().split("\n")).toEqual(["gre", '{key="7", remote_ip="192.0.2.10"}']);
    expect((await vsctl("get", "Interface", "mr-tape", "type", "options")).trim().split("\n")).toEqual(["erspan", '{erspan_dir="1", erspan_hwid="4", erspan_ver="2", key="5", remote_ip="192.0.2.11"}']);
    expect((await vsctl("get", "Port", "mr-tape", "external_ids")).trim()).toBe(`{netfleet-mirror=${OWNER}}`);
    // ingress only: what vm1 and vm3 receive, nothing they send
    expect((await vsctl("get", "Mirror", "tape", "select_src_port")).trim()).toBe("[]");
    expect((await vsctl("get", "Mirror", "tape", "select_dst_port")).trim().split(", ").length).toBe(2);
  });

  it("drift by hand (output moved, a selection cleared) is set back in one pass, check mode first says what it would do", async () => {
    await vsctl("--", "--id=@p", "get", "Port", "vnet3", "--", "set", "Mirror", "tap", "output_port=@p", "select_dst_port=[]");
    const check = await pass([tap], true);
    expect(check[0]).toMatchObject({ result: null, changes: { "mirror tap dst": { old: [], new: ["vnet1"] }, "mirror tap output": { old: "vnet3", new: "vnet2" } } });
    expect((await pass([tap]))[0]).toMatchObject({ result: true, changed: true });
    expect((await pass([tap]))[0]).toMatchObject({ result: true, changed: false });
    const out = (await vsctl("get", "Mirror", "tap", "output_port")).trim();
    expect((await vsctl("get", "Port", "vnet2", "_uuid")).trim()).toBe(out);
  });

  it("an operator's mirror of the same name is refused and left as it was", async () => {
    await vsctl("--", "--id=@p", "get", "Port", "vnet3", "--", "--id=@m", "create", "Mirror", "name=ops", "select_all=true", "output_port=@p", "--", "add", "Bridge", "br-lan", "mirrors", "@m");
    const [r] = await pass([{ ...tap, name: "ops" }]);
    expect(r).toMatchObject({ result: false, changed: false });
    expect(r!.comment).toMatch(/^mirror ops exists on br-lan and is not managed by netfleet/);
    expect((await vsctl("get", "Mirror", "ops", "select_all")).trim()).toBe("true");
  });

  it("prune removes our rows and tunnel ports no longer kept, keeps the kept one and the operator's", async () => {
    const [r] = await pass([prune(["tap"])]);
    expect(r).toMatchObject({ result: true, changed: true });
    expect(Object.keys(r!.changes).sort()).toEqual(["ovs-mirror tape", "ovs-mirror tapg", "port mr-tape", "port mr-tapg"]);
    expect((await mirrorsTable()).data.map((row) => row[0]).sort()).toEqual(["ops", "tap"]);
    expect((await vsctl("--bare", "--columns=name", "list", "Port")).split("\n").filter((l) => l.trim()).sort()).toEqual(["br-lan", "vnet1", "vnet2", "vnet3"]);
    expect((await pass([prune(["tap"])]))[0]).toMatchObject({ result: true, changed: false });
  });
});
