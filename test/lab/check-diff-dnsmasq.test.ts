import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealAssignment, type DnsmasqSpec, type HostAssignment } from "@netfleet/shared";

/**
 * `netfleet-agent apply --check` of a dnsmasq the agent started (dnsmasq 2.90,
 * dropping to its own account, in a namespace of its own, prefix `nfdd`): a
 * changed lease time shows as the config's dhcp-range line old and new and a
 * new static host as the hosts file's added line, exit 2, the running dnsmasq
 * and its files untouched. Control: the converged host exits 0 with no diff.
 */
const REPO = join(import.meta.dirname, "..", "..");
const AGENT = join(REPO, "packages", "agent", "bin", "netfleet-agent.mjs");
const NS = `nfdd${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), "nf-check-dnsmasq-"));
chmodSync(dir, 0o755); // dnsmasq reopens its log as its own user
const run = join(dir, "run");
const spec: DnsmasqSpec = {
  kind: "dnsmasq",
  name: "secure",
  interface: "gw-x",
  address: "10.81.0.1",
  netmask: "255.255.255.0",
  domain: "secure.lab.test",
  dhcp: { start: "10.81.0.100", end: "10.81.0.199", leaseTime: "1h" },
  router: true,
  mtu: 1500,
  maxTtl: 600,
  hosts: [{ name: "vma1", mac: "52:54:00:81:0a:01", ip: "10.81.0.11" }],
  dns: "open",
  upstream: ["203.0.113.53"],
  allowNames: [],
};

const must = async (argv: string[]) => {
  const r = await execa(argv[0]!, argv.slice(1), { reject: false });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
};
const inNs = (argv: string[]) => ["ip", "netns", "exec", NS, ...argv];

function assignmentFile(s: DnsmasqSpec): string {
  const doc: HostAssignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "difftest", host: "gw", role: "backend", resources: [s] });
  const path = join(dir, `gw-${doc.hash.slice(0, 8)}.json`);
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

async function agent(s: DnsmasqSpec, ...flags: string[]) {
  const r = await execa("ip", ["netns", "exec", NS, process.execPath, AGENT, "apply", "--assignment", assignmentFile(s), "--any-host", "--run-dir", run, ...flags], { reject: false });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

const pidOf = () => Number(readFileSync(join(run, "dnsmasq", "secure.pid"), "utf8").trim());

beforeAll(async () => {
  await must(["ip", "netns", "add", NS]);
  await must(inNs(["ip", "link", "add", "gw-x", "type", "veth", "peer", "name", "gw-xp"]));
  await must(inNs(["ip", "addr", "add", "10.81.0.1/24", "dev", "gw-x"]));
  await must(inNs(["ip", "link", "set", "gw-x", "up"]));
  await must(inNs(["ip", "link", "set", "gw-xp", "up"]));
  const first = await agent(spec);
  if (first.code !== 0) throw new Error(`first apply exited ${first.code}: ${first.stdout}\n${first.stderr}`);
});

afterAll(async () => {
  try {
    process.kill(pidOf(), "SIGTERM");
  } catch {
    /* not running */
  }
  await new Promise((r) => setTimeout(r, 300));
  await execa("ip", ["netns", "del", NS], { reject: false });
  rmSync(dir, { recursive: true, force: true });
});

describe("netfleet-agent apply --check on a running dnsmasq", () => {
  it("control: the converged dnsmasq exits 0 with no diff", async () => {
    const r = await agent(spec, "--check");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok +dnsmasq\[secure\]$/m);
    expect(r.stdout).not.toMatch(/^\s+(---|\+\+\+|@@) /m);
    // It runs, and its lease and log files are its account's with group root, 0660 (root opens them before the drop).
    expect(() => process.kill(pidOf(), 0)).not.toThrow();
    const owners = await must(["stat", "--format=%U:%G %a", join(run, "state", "dnsmasq", "secure.leases"), join(run, "dnsmasq", "secure.log")]);
    expect(owners.split("\n")).toEqual(["dnsmasq:root 660", "dnsmasq:root 660"]);
  });

  it("another lease time and a new static host: exit 2, the config's and the hosts file's diffs, dnsmasq left running as it was", async () => {
    const pid = pidOf();
    const conf = readFileSync(join(run, "dnsmasq", "secure.conf"), "utf8");
    const changed = { ...spec, dhcp: { ...spec.dhcp!, leaseTime: "2h" }, hosts: [...spec.hosts, { name: "vma2", mac: "52:54:00:81:0a:02", ip: "10.81.0.12" }] };
    const r = await agent(changed, "--check");
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const lines = r.stdout.split("\n").map((l) => l.replace(/^ {10}/, ""));
    expect(lines).toContain(`--- live: ${join(run, "dnsmasq", "secure.conf")}`);
    expect(lines).toContain(`--- live: ${join(run, "dnsmasq", "secure.hosts")}`);
    expect(lines.filter((l) => /^[-+](?![-+]{2} )/.test(l))).toEqual([
      "-dhcp-range=10.81.0.100,10.81.0.199,255.255.255.0,1h",
      "+dhcp-range=10.81.0.100,10.81.0.199,255.255.255.0,2h",
      "+52:54:00:81:0a:02,10.81.0.12,vma2",
    ]);
    expect(lines).toContain(`running: pid ${pid} (old config) -> restarted`);
    expect(pidOf()).toBe(pid);
    expect(readFileSync(join(run, "dnsmasq", "secure.conf"), "utf8")).toBe(conf);
    console.log(`apply --check of a changed lease time and host (exit ${r.code}):\n${r.stdout}`);
  });
});
