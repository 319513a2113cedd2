import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealAssignment, type HostAssignment, type VmPortPolicySpec } from "@netfleet/shared";

/**
 * `netfleet-agent apply --check` of a VM bridge's OpenFlow rules on a real
 * Open vSwitch (its own ovsdb-server and ovs-vswitchd, userspace datapath, in
 * a namespace of its own, prefix `nfdo`): a VM port (a veth marked with the
 * guest's MAC as libvirt marks it) whose rules were edited by hand shows as
 * that port's own unified diff (a rule someone else added, with its cookie;
 * a rule of ours deleted), exit 2, the bridge's rules left as they were; the
 * apply then removes the foreign rule and the check is clean again.
 * Control: the converged bridge exits 0 with no diff.
 */
const REPO = join(import.meta.dirname, "..", "..");
const AGENT = join(REPO, "packages", "agent", "bin", "netfleet-agent.mjs");
const NS = `nfdo${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), "nf-check-flows-"));
const ovs = join(dir, "ovs");
const MAC = "52:54:00:aa:00:05";
const spec: VmPortPolicySpec = {
  kind: "vm-port-policy",
  name: "br-x",
  network: "secure",
  uplinkPort: "up0",
  gateway: { ip: "10.81.0.1", mac: "02:4e:46:00:04:39" },
  isolatedDefault: false,
  cookie: "0x4e46000000000439",
  vms: [{ name: "dom1", mac: MAC, ip: "10.81.0.50", isolated: false }],
};

const must = async (argv: string[]) => {
  const r = await execa(argv[0]!, argv.slice(1), { reject: false });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
};
const inNs = (argv: string[]) => ["ip", "netns", "exec", NS, ...argv];
const env = ["env", `OVS_RUNDIR=${ovs}`, `OVS_LOGDIR=${ovs}`, `OVS_DBDIR=${ovs}`];
const vsctl = (...args: string[]) => must(inNs(["ovs-vsctl", `--db=unix:${ovs}/db.sock`, "--timeout=20", ...args]));
const ofctl = (...args: string[]) => must(inNs(["ovs-ofctl", args[0]!, `unix:${ovs}/br-x.mgmt`, ...args.slice(1)]));
const rules = async () => (await ofctl("dump-flows", "--no-stats")).split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("NXST")).sort();

function assignmentFile(): string {
  const doc: HostAssignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "difftest", host: "hv", role: "vmhost", resources: [spec] });
  const path = join(dir, "hv.json");
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

async function agent(...flags: string[]) {
  const argv = [process.execPath, AGENT, "apply", "--assignment", assignmentFile(), "--any-host", "--run-dir", join(dir, "run"), "--ovs-db", `${ovs}/db.sock`, "--ovs-rundir", ovs, ...flags];
  const r = await execa("ip", ["netns", "exec", NS, ...argv], { reject: false });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

let vnetOfport = 0;

beforeAll(async () => {
  await must(["ip", "netns", "add", NS]);
  await must(["mkdir", "-p", ovs]);
  await must(["ovsdb-tool", "create", join(ovs, "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema"]);
  await must(inNs([...env, "ovsdb-server", join(ovs, "conf.db"), `--remote=punix:${ovs}/db.sock`, `--pidfile=${ovs}/ovsdb.pid`, `--unixctl=${ovs}/ovsdb.ctl`, `--log-file=${ovs}/ovsdb.log`, "--detach", "--no-chdir", "-vconsole:off"]));
  await vsctl("--no-wait", "init");
  await must(inNs([...env, "ovs-vswitchd", `unix:${ovs}/db.sock`, `--pidfile=${ovs}/vswitchd.pid`, `--unixctl=${ovs}/vswitchd.ctl`, `--log-file=${ovs}/vswitchd.log`, "--detach", "--no-chdir", "-vconsole:off"]));
  for (const name of ["up0", "vnet0"]) {
    await must(inNs(["ip", "link", "add", name, "type", "veth", "peer", "name", `${name}p`]));
    await must(inNs(["ip", "link", "set", name, "up"]));
    await must(inNs(["ip", "link", "set", `${name}p`, "up"]));
  }
  await vsctl("add-br", "br-x", "--", "set", "bridge", "br-x", "datapath_type=netdev", "fail_mode=secure");
  await vsctl("add-port", "br-x", "up0");
  // As libvirt marks a guest's tap: external_ids:attached-mac.
  await vsctl("add-port", "br-x", "vnet0", "--", "set", "interface", "vnet0", `external_ids:attached-mac=${MAC}`);
  vnetOfport = Number((await vsctl("get", "interface", "vnet0", "ofport")).trim());
  const first = await agent();
  if (first.code !== 0) throw new Error(`first apply exited ${first.code}: ${first.stdout}\n${first.stderr}`);
});

afterAll(async () => {
  for (const pidfile of ["vswitchd.pid", "ovsdb.pid"]) {
    try {
      process.kill(Number(readFileSync(join(ovs, pidfile), "utf8").trim()), "SIGTERM");
    } catch {
      /* not running */
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  await execa("ip", ["netns", "del", NS], { reject: false });
  rmSync(dir, { recursive: true, force: true });
});

describe("netfleet-agent apply --check on a real OVS bridge's rules", () => {
  it("control: the converged bridge exits 0 with no diff", async () => {
    expect(vnetOfport).toBeGreaterThan(0);
    const r = await agent("--check");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok +vm-port-policy\[br-x\]$/m);
    expect(r.stdout).not.toMatch(/^\s+(---|\+\+\+|@@) /m);
  });

  it("a rule added by hand and one of ours deleted: exit 2, the VM port's own diff naming the other cookie, the rules left as they were", async () => {
    const own = `priority=210,ip,in_port=${vnetOfport},dl_src=${MAC},nw_src=10.81.0.50`;
    await ofctl("del-flows", "--strict", own);
    await ofctl("add-flow", `cookie=0x1234,priority=500,in_port=${vnetOfport},actions=NORMAL`);
    const before = await rules();
    console.log(`the bridge's rules after the hand edit (ovs-ofctl dump-flows --no-stats):\n${before.join("\n")}`);
    const r = await agent("--check");
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const lines = r.stdout.split("\n").map((l) => l.replace(/^ {10}/, ""));
    const label = `br-x port vnet0 (ofport ${vnetOfport}, ${MAC})`;
    expect(lines).toContain(`--- live: ${label}`);
    expect(lines).toContain(`+++ desired: ${label}`);
    expect(lines.filter((l) => /^[-+](?![-+]{2} )/.test(l))).toEqual([`-cookie=0x1234,priority=500,in_port=${vnetOfport} actions=NORMAL`, `+${own} actions=goto_table:1`]);
    // The bridge's own rules are untouched: no second diff.
    expect(lines.filter((l) => l.startsWith("--- live:"))).toHaveLength(1);
    expect(await rules()).toEqual(before);
    console.log(`apply --check after a hand edit of vnet0's rules (exit ${r.code}):\n${r.stdout}`);
    // The apply removes the hand-added rule by its real priority (OpenFlow 1.3 prints reset_counts before it) and
    // puts ours back; the check is then clean again.
    const applied = await agent();
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    expect((await rules()).filter((l) => l.includes("priority=500"))).toEqual([]);
    expect((await agent("--check")).code).toBe(0);
  });
});
