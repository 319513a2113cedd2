/**
 * Lab tier: the Ansible playbook of the bench (test/bench/ansible/vmhost.yml)
 * builds the same working network as netfleet. One lab (prefix nfans): netfleet
 * builds it, the VM hosts' agents are stopped and their bridges and libvirt
 * networks removed, then Ansible configures the VM hosts over SSH (an sshd
 * per host namespace) from empty; the OpenFlow tables it installs equal
 * netfleet's rule for rule, a second run changes nothing, and the lab's
 * connectivity matrix passes with the VM hosts as Ansible left them.
 * Ansible is CPU-bound Python on both ends: on a loaded 2-core machine one
 * run of the playbook over the 2 VM hosts took minutes, hence the timeouts.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileSite } from "@netfleet/controller";
import { loadInventory, type HostAssignment, type Inventory } from "@netfleet/shared";
import { connectivityProbes, labDown, labEmptyVmHosts, labPlugVmPorts, labSshd, labStatus, labUp, readPidfile, runProbes, type LabOptions, type LabStatus, type SshTargets } from "@netfleet/lab";
import { writeInventory } from "../bench/ansible/inventory.ts";
import { runPlaybook, topTasks, type PlaybookRun } from "../bench/ansible/run.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const lab: LabOptions = {
  inventoryDir: join(repoRoot, "inventories", "lab"),
  prefix: "nfans",
  runDir: "/tmp/nfans-lab",
  repoRoot: process.env.NETFLEET_LAB_AGENT_ROOT ?? repoRoot,
};
const inventory: Inventory = loadInventory(lab.inventoryDir);
const assignments: HostAssignment[] = compileSite(inventory);
const isRoot = process.getuid?.() === 0;
/** ansible, and the Python modules community.libvirt needs (python3-libvirt, python3-lxml): scripts/setup.sh installs them. */
const hasAnsible = ["/usr/bin/ansible-playbook", "/usr/lib/python3/dist-packages/libvirt.py", "/usr/lib/python3/dist-packages/lxml"].every((p) => existsSync(p));

/** A VM bridge's OpenFlow rules with port names, without cookies or counters, sorted: what two installers can be compared on. */
function rules(status: LabStatus, host: string, bridge: string): string[] {
  const h = status.hosts.find((x) => x.name === host)!;
  const out = execFileSync("ovs-ofctl", ["-O", "OpenFlow13", "--names", "dump-flows", `unix:${h.ovsRundir}/${bridge}.mgmt`, "--no-stats"], { encoding: "utf8" });
  return out
    .split("\n")
    .map((l) => l.trim().replace(/^cookie=0x[0-9a-f]+, ?/, ""))
    .filter((l) => l && !l.startsWith("OFPST_FLOW"))
    .sort();
}

const vmBridges = (host: string) => assignments.find((a) => a.host === host)!.resources.filter((r) => r.kind === "vm-port-policy").map((r) => r.name);

/**
 * Opt-in (`NETFLEET_ANSIBLE_LAB=1`) for its cost, not its state: it has run whole under vitest, 3/3 in 265 s at load
 * 10-14 on 2 cores (lab up 68 s; playbook runs 97, 57 and 24 s), and CI's total budget (30 min) leaves no 4-5 minutes
 * for one Ansible file. Run it with the lab lock when the playbook, labSshd or the VM-host compile changes.
 */
const optedIn = process.env.NETFLEET_ANSIBLE_LAB === "1";

describe.skipIf(!isRoot || !hasAnsible || !optedIn)("Ansible configures the lab's VM hosts (prefix nfans, /tmp/nfans-lab)", () => {
  let status: LabStatus;
  let ssh: SshTargets;
  const vmHosts = inventory.hosts.filter((h) => h.role === "vmhost").map((h) => h.name);
  const netfleetRules = new Map<string, string[]>();
  const runs: PlaybookRun[] = [];

  beforeAll(async () => {
    await labDown(lab); // leftovers of an interrupted run
    status = await labUp(lab, (line) => process.stderr.write(`${line}\n`));
    ssh = await labSshd(lab);
  }, 900_000);

  afterAll(async () => {
    await labDown(lab);
    process.stderr.write(`ansible runs (ms, changed): ${JSON.stringify(runs.map((r) => [Math.round(r.wallMs), r.changed]))}\n`);
    for (const [i, r] of runs.entries()) process.stderr.write(`ansible run ${i + 1}, costliest tasks: ${topTasks(r, 6).join("; ")}\n`);
  }, 60_000);

  it("from empty: bridges, bond, tagged patch ports, libvirt networks, then each VM bridge's OpenFlow table once the VM ports are plugged; equal to netfleet's rules", async () => {
    expect(status.up, JSON.stringify(status.problems)).toBe(true);
    for (const h of vmHosts) for (const b of vmBridges(h)) netfleetRules.set(`${h}/${b}`, rules(status, h, b));
    expect([...netfleetRules.values()].flat().length).toBeGreaterThan(50);

    const removed = await labEmptyVmHosts(lab);
    for (const h of vmHosts) {
      expect(removed[h]!.bridges.sort()).toEqual(["br-datain", "br-secure", "br-service", "br-uplink"]);
      expect(removed[h]!.networks.sort()).toEqual(["datain", "secure", "service"]);
    }
    const inv = writeInventory(ssh.dir, ssh, assignments, status);
    const first = await runPlaybook(ssh, inv, 10);
    runs.push(first);
    expect(first.failures).toEqual([]);
    expect(first.exitCode).toBe(0);
    expect(Object.keys(first.stats).sort()).toEqual(vmHosts);
    expect(first.changed).toBeGreaterThan(0);
    // libvirt plugs a started VM's tap into its network's bridge: the lab does the same for its namespace VMs.
    await labPlugVmPorts(lab);
    const second = await runPlaybook(ssh, inv, 10);
    runs.push(second);
    expect(second.failures).toEqual([]);
    for (const h of vmHosts) expect(second.stats[h]!.changed, h).toBeGreaterThan(0); // the VM ports' rules
    for (const h of vmHosts) for (const b of vmBridges(h)) expect(rules(status, h, b), `${h}/${b}`).toEqual(netfleetRules.get(`${h}/${b}`));
  }, 1_500_000);

  it("again: a no-op (nothing changed on any host)", async () => {
    const inv = join(ssh.dir, "inventory.yml");
    const again = await runPlaybook(ssh, inv, 10);
    runs.push(again);
    expect(again.failures).toEqual([]);
    expect(Object.fromEntries(Object.entries(again.stats).map(([h, s]) => [h, s.changed]))).toEqual(Object.fromEntries(vmHosts.map((h) => [h, 0])));
  }, 900_000);

  it("the connectivity matrix passes with the VM hosts as Ansible built them (their agents stopped)", async () => {
    status = await labStatus(lab);
    for (const h of status.hosts.filter((x) => x.role === "vmhost")) {
      const pid = readPidfile(join(h.agentDir, "agent.pid"));
      expect(pid === undefined || !existsSync(`/proc/${pid}`), `${h.name}'s agent is stopped`).toBe(true);
    }
    const rows = await runProbes(connectivityProbes(inventory, status));
    const failed = rows.filter((r) => !r.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    expect(rows.length).toBeGreaterThan(50);
    for (const check of [/^same-network \(across hosts\)$/, /^isolated port/, /^vlans apart \(across hosts\)$/, /^anti-spoofing \(source IP\)$/, /^dhcp lease$/, /^egress \(allowlist\)$/])
      expect(rows.some((r) => check.test(r.check) && r.ok), String(check)).toBe(true);
  }, 900_000);
});
