/**
 * The agent's own cost in the lab: a no-op reconcile of an already-converged
 * backend and vmhost, and a vmhost's first apply. Builds its own lab
 * (prefix nfx) and tears it down.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeAssignment, sealAssignment, type HostAssignment } from "@netfleet/shared";
import { labDown, labUp, readPidfile, type LabHost, type LabOptions, type LabStatus } from "@netfleet/lab";
import type { CostRun } from "./agent-cost.ts";

export interface NoopRow {
  role: "backend" | "vmhost";
  wallMs: number;
  commands: number;
  mutatingCommands: number;
}

export interface FirstApplyRow {
  wallMs: number;
  commandMs: number;
  overheadRatio: number;
  commands: number;
}

const AGENT_COST = join(import.meta.dirname, "agent-cost.ts");

function cost(host: LabHost, assignmentFile: string, runs: number): CostRun[] {
  const argv = ["netns", "exec", host.namespace, process.execPath, AGENT_COST, "--assignment", assignmentFile, "--runs", String(runs)];
  argv.push("--ovs-db", host.ovsDb, "--ovs-rundir", host.ovsRundir, "--run-dir", host.agentDir);
  if (host.libvirtUri) argv.push("--libvirt-uri", host.libvirtUri);
  const out = execFileSync("ip", argv, { encoding: "utf8", timeout: 120_000 });
  return out.trim().split("\n").map((l) => JSON.parse(l) as CostRun);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

export async function labCost(repoRoot: string, log: (line: string) => void): Promise<{ noop: NoopRow[]; firstApply: FirstApplyRow; upMs: number }> {
  // File mode: the agents' own cost is what is measured here, not the control plane (the rollout part does that).
  const lab: LabOptions = { inventoryDir: join(repoRoot, "inventories", "lab"), prefix: "nfx", runDir: "/tmp/nfx-lab", repoRoot, control: "file" };
  await labDown(lab);
  try {
    const t = performance.now();
    const status: LabStatus = await labUp(lab);
    const upMs = performance.now() - t;
    if (!status.up) throw new Error(`bench lab not up: ${(status.problems ?? []).join("; ")}`);
    log(`bench lab up in ${Math.round(upMs)} ms`);
    const file = (h: LabHost) => join(lab.runDir, "assignments", `${h.name}.json`);
    const backend = status.hosts.find((h) => h.role === "backend")!;
    const vmhost = status.hosts.find((h) => h.role === "vmhost")!;

    // The agent daemons keep running: a no-op reconcile is what they do all day.
    const noop: NoopRow[] = [];
    for (const [role, h] of [["backend", backend], ["vmhost", vmhost]] as const) {
      const runs = cost(h, file(h), 7).slice(2); // the first two warm the page cache and JIT
      noop.push({ role, wallMs: median(runs.map((r) => r.wallMs)), commands: Math.max(...runs.map((r) => r.commands)), mutatingCommands: Math.max(...runs.map((r) => r.mutatingCommands)) });
    }

    // First apply: stop the vmhost's daemon, remove everything of ours (an assignment holding
    // only the prune), then apply the real assignment once.
    const pid = readPidfile(join(vmhost.agentDir, "agent.pid"));
    if (pid) process.kill(pid, "SIGTERM");
    const real: HostAssignment = decodeAssignment(file(vmhost), readFileSync(file(vmhost), "utf8"));
    const empty = sealAssignment({ ...real, resources: [{ kind: "prune", name: "host", keep: { links: [], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false } }] });
    const emptyFile = join(lab.runDir, "assignments", `${vmhost.name}.empty.json`);
    writeFileSync(emptyFile, JSON.stringify(empty));
    const wipe = cost(vmhost, emptyFile, 1)[0]!;
    if (wipe.failed > 0) throw new Error(`bench: wiping ${vmhost.name} failed`);
    const first = cost(vmhost, file(vmhost), 1)[0]!;
    if (first.failed > 0 || first.changed === 0) throw new Error(`bench: first apply on ${vmhost.name}: ${JSON.stringify(first)}`);
    const firstApply: FirstApplyRow = {
      wallMs: first.wallMs,
      commandMs: first.commandMs,
      overheadRatio: Math.round((first.wallMs / first.commandMs) * 100) / 100,
      commands: first.commands,
    };
    return { noop, firstApply, upMs };
  } finally {
    await labDown(lab);
  }
}
