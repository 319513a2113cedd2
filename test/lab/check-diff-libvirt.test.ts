import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealAssignment, type HostAssignment, type LibvirtNetworkSpec } from "@netfleet/shared";
import { LabExec } from "@netfleet/lab";
import { ensureLibvirtd, stopLibvirtd } from "../../packages/lab/src/libvirt.ts";
import { libvirtPaths } from "../../packages/lab/src/paths.ts";

/**
 * `netfleet-agent apply --check` of a libvirt network on a real libvirtd (the
 * lab's way: its own libvirtd in a private mount namespace, namespace prefix
 * `nfdv`): a portgroup taken out of the inventory shows as its XML lines
 * removed from the definition libvirt holds (net-dumpxml made canonical), exit
 * 2, the definition unchanged. Control: the converged network, exit 0, no diff.
 */
const REPO = join(import.meta.dirname, "..", "..");
const AGENT = join(REPO, "packages", "agent", "bin", "netfleet-agent.mjs");
const NS = `nfdv${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), "nf-check-lv-"));
const lv = libvirtPaths(join(dir, "lv"));
const spec: LibvirtNetworkSpec = {
  kind: "libvirt-network",
  name: "secure",
  bridge: "br-secure",
  portgroups: [
    { name: "default", default: true },
    { name: "isolated", default: false, profileId: "netfleet-isolated" },
  ],
};

function assignmentFile(s: LibvirtNetworkSpec): string {
  const doc: HostAssignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "difftest", host: "hv", role: "vmhost", resources: [s] });
  const path = join(dir, `hv-${doc.hash.slice(0, 8)}.json`);
  writeFileSync(path, JSON.stringify(doc, null, 2));
  return path;
}

async function agent(s: LibvirtNetworkSpec, ...flags: string[]) {
  const argv = [process.execPath, AGENT, "apply", "--assignment", assignmentFile(s), "--any-host", "--run-dir", join(dir, "run"), "--libvirt-uri", lv.uri, ...flags];
  const r = await execa("ip", ["netns", "exec", NS, ...argv], { reject: false });
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}
const dumpxml = async () => (await execa("virsh", ["-q", "-c", lv.uri, "net-dumpxml", "--inactive", "secure"])).stdout;

beforeAll(async () => {
  await execa("ip", ["netns", "add", NS]);
  await ensureLibvirtd(new LabExec(), NS, lv, join(dir, "ovs"), (l) => console.log(l));
  const first = await agent(spec);
  if (first.code !== 0) throw new Error(`first apply exited ${first.code}: ${first.stdout}\n${first.stderr}`);
}, 180_000);

afterAll(async () => {
  await stopLibvirtd(lv).catch(() => undefined);
  await execa("ip", ["netns", "del", NS], { reject: false });
  rmSync(dir, { recursive: true, force: true });
});

describe("netfleet-agent apply --check on a real libvirt network", () => {
  it("control: the converged network exits 0 with no diff", async () => {
    const r = await agent(spec, "--check");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok +libvirt-network\[secure\]$/m);
    expect(r.stdout).not.toMatch(/^\s+(---|\+\+\+|@@) /m);
  });

  it("a portgroup taken out: exit 2, its lines removed from libvirt's definition in a unified diff, the definition unchanged", async () => {
    const before = await dumpxml();
    const r = await agent({ ...spec, portgroups: spec.portgroups.slice(0, 1) }, "--check");
    expect(r.code, r.stdout + r.stderr).toBe(2);
    const lines = r.stdout.split("\n").map((l) => l.replace(/^ {10}/, ""));
    expect(lines).toContain("--- live: virsh net-dumpxml --inactive secure");
    expect(lines).toContain("+++ desired: network secure");
    expect(lines.filter((l) => /^[-+](?![-+]{2} )/.test(l))).toEqual([
      '-  <portgroup name="isolated">',
      '-    <virtualport type="openvswitch">',
      '-      <parameters profileid="netfleet-isolated"/>',
      "-    </virtualport>",
      "-  </portgroup>",
    ]);
    expect(await dumpxml()).toBe(before);
    console.log(`apply --check with the isolated portgroup taken out (exit ${r.code}):\n${r.stdout}`);
  });
});
