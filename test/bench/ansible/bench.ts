/**
 * The bench's Ansible part (issue 18 point 5): the lab's VM hosts configured
 * twice, by netfleet and by the Ansible playbook vmhost.yml over SSH, each
 * from empty (bridges and libvirt networks gone, agents stopped) and again as
 * a no-op; then Ansible's no-op over 100 hosts beside netfleet's rollout of
 * 100 and 1,000 simulated agents. Prints the ratios measured in this run.
 *
 * "From empty" on both sides is the same two steps: a run on the empty host
 * (bridges, bond, tagged patch ports, libvirt networks, the bridges' base
 * OpenFlow tables), the VM ports plugged (as libvirt does when VMs start),
 * a second run (each VM port's rules). netfleet's run is `netfleet-agent
 * apply` of the compiled assignment in each VM host's namespace, both hosts
 * at once: the engine a rollout's agents run, without the control plane
 * (which the rollout rows measure). The 100-host Ansible row is 50 inventory
 * aliases of each lab VM host, each its own SSH connection (own ControlPath
 * to that host's sshd on port 22), each running the whole playbook as a
 * no-op against the same real OVS and libvirtd. (It first gave each alias a
 * port of its own, 50 per sshd; sshd listens on at most 16 sockets and
 * exited, which was the quick bench's "waiting for sshd" failure.)
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compileSite } from "@netfleet/controller";
import { loadInventory } from "@netfleet/shared";
import { agentCommand, LabExec, labDown, labEmptyVmHosts, labPlugVmPorts, labSshd, labUp, readLabState, type LabOptions, type LabStatus } from "@netfleet/lab";
import { rolloutBench, type RolloutRow } from "../rollout.ts";
import { writeInventory } from "./inventory.ts";
import { runPlaybook, topTasks } from "./run.ts";

/** One side's figures (ms): from empty (run, plug, run), and a no-op run after it. */
export interface SideRow {
  tool: "netfleet" | "ansible";
  fromEmptyMs: number;
  noopMs: number;
  /** Changes the no-op run made (netfleet: resources changed; Ansible: tasks changed); 0 expected. */
  noopChanged: number;
  /**
   * CPU-ms of the no-op run, all hosts together: netfleet's `netfleet-agent apply`
   * processes (and the commands they ran); Ansible's control node plus its targets'
   * sshd sessions and modules (run.ts PlaybookRun.controlCpuMs + targetCpuMs).
   */
  noopCpuMs: number;
}

export interface AnsibleBench {
  hosts: number;
  sides: SideRow[];
  /** Ansible's no-op over `ansibleHosts` hosts: wall time and hosts per second. */
  ansibleNoop: { hosts: number; forks: number; wallMs: number; hostsPerS: number; failed: number; changed: number; controlCpuMs: number; targetCpuMs: number; connections: number };
  /** netfleet's rollout of N simulated agents: convergeMs and hosts per second. */
  netfleetRollout: { agents: number; convergeMs: number; hostsPerS: number; result?: string }[];
  /** 1-minute load average before and after the part (the machine is shared). */
  load: [number, number];
}

/** Inventory aliases per lab VM host in the no-op throughput row (2 VM hosts: 100 hosts). */
const ALIASES = 50;
const load1 = () => Number(execFileSync("cat", ["/proc/loadavg"], { encoding: "utf8" }).split(" ")[0]);

/** This process's reaped children's CPU (/proc/self/stat cutime + cstime), ms. */
function childCpuMs(): number {
  const st = readFileSync("/proc/self/stat", "utf8");
  const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) * 10;
}

async function netfleetApply(lab: LabOptions, status: LabStatus): Promise<{ ms: number; changed: number; cpuMs: number }> {
  const t = readLabState(lab.runDir)!.topology;
  const x = new LabExec(600_000);
  const cpu0 = childCpuMs();
  const t0 = performance.now();
  const runs = await Promise.all(
    status.hosts
      .filter((h) => h.role === "vmhost")
      .map(async (h) => {
        const file = t.hosts.find((th) => th.name === h.name)!.assignmentFile;
        const r = await x.probe(agentCommand(lab, h, ["apply", "--assignment", file, "--name", h.name, "--json"]));
        const out = JSON.parse(r.stdout) as { summary: { changed: number; failed: number } };
        if (r.exitCode !== 0 || out.summary.failed > 0) throw new Error(`netfleet-agent apply on ${h.name} exited ${r.exitCode}: ${r.stderr.trim() || JSON.stringify(out.summary)}`);
        return out.summary.changed;
      }),
  );
  return { ms: performance.now() - t0, changed: runs.reduce((a, b) => a + b, 0), cpuMs: childCpuMs() - cpu0 };
}

/**
 * Builds its own lab (prefix nfab), measures, tears it down. `rollout`: the
 * bench's own rollout rows of this run (100 and 1,000 simulated agents are
 * taken from them), or the fleet sizes to run rolloutBench for here.
 */
export async function ansibleBench(repoRoot: string, log: (line: string) => void, rollout: readonly RolloutRow[] | number[] = [100, 1000], aliases = ALIASES): Promise<AnsibleBench> {
  // Prefix nfab: not nfb, the bootstrap suite's world (test/bootstrap, namespaces nfb-*), which the two would tear down in each other.
  const lab: LabOptions = { inventoryDir: join(repoRoot, "inventories", "lab"), prefix: "nfab", runDir: "/tmp/nfab-lab", repoRoot };
  const inventory = loadInventory(lab.inventoryDir);
  const assignments = compileSite(inventory);
  const loadBefore = load1();
  await labDown(lab);
  try {
    const status = await labUp(lab, log);
    if (!status.up) throw new Error(`lab nfab not up: ${(status.problems ?? []).join("; ")}`);
    const ssh = await labSshd(lab);
    const hosts = ssh.targets.length;
    const sides: SideRow[] = [];

    await labEmptyVmHosts(lab);
    const n1 = await netfleetApply(lab, status);
    await labPlugVmPorts(lab);
    const n2 = await netfleetApply(lab, status);
    const n3 = await netfleetApply(lab, status);
    sides.push({ tool: "netfleet", fromEmptyMs: n1.ms + n2.ms, noopMs: n3.ms, noopChanged: n3.changed, noopCpuMs: n3.cpuMs });
    log(`[ansible bench] netfleet from empty ${Math.round(n1.ms)} + ${Math.round(n2.ms)} ms, no-op ${Math.round(n3.ms)} ms, ${n3.cpuMs} CPU-ms (${n3.changed} changed)`);

    await labEmptyVmHosts(lab);
    const inv = writeInventory(ssh.dir, ssh, assignments, status);
    const a1 = await runPlaybook(ssh, inv, 10);
    await labPlugVmPorts(lab);
    const a2 = await runPlaybook(ssh, inv, 10);
    const a3 = await runPlaybook(ssh, inv, 10);
    for (const r of [a1, a2, a3]) if (r.failedHosts.length > 0) throw new Error(`ansible-playbook failed: ${r.failures.slice(0, 5).join("; ")}`);
    sides.push({ tool: "ansible", fromEmptyMs: a1.wallMs + a2.wallMs, noopMs: a3.wallMs, noopChanged: a3.changed, noopCpuMs: a3.controlCpuMs + a3.targetCpuMs });
    log(`[ansible bench] ansible from empty ${Math.round(a1.wallMs)} + ${Math.round(a2.wallMs)} ms, no-op ${Math.round(a3.wallMs)} ms, CPU ${a3.controlCpuMs} ms control node + ${a3.targetCpuMs} ms targets (${a3.changed} changed)`);

    log(`[ansible bench] ansible no-op, costliest tasks: ${topTasks(a3).join("; ")}`);
    // The aliases share their host's flow dir, which the runs above filled: this run is a no-op from its first task.
    const inv100 = writeInventory(ssh.dir, ssh, assignments, status, aliases);
    const forks = Math.min(50, hosts * aliases);
    const wide = await runPlaybook(ssh, inv100, forks, 1_800_000);
    const ansibleNoop = { hosts: hosts * aliases, forks, wallMs: wide.wallMs, hostsPerS: (hosts * aliases) / (wide.wallMs / 1000), failed: wide.failedHosts.length, changed: wide.changed, controlCpuMs: wide.controlCpuMs, targetCpuMs: wide.targetCpuMs, connections: wide.connections };
    log(`[ansible bench] ansible no-op over ${ansibleNoop.hosts} hosts: ${Math.round(wide.wallMs)} ms, CPU ${wide.controlCpuMs} ms control node + ${wide.targetCpuMs} ms targets, ${wide.connections} SSH connections (${wide.changed} changed, ${wide.failedHosts.length} failed); costliest tasks: ${topTasks(wide).join("; ")}`);
    await labDown(lab);

    const netfleetRollout: AnsibleBench["netfleetRollout"] = [];
    const rows = rollout.every((r) => typeof r === "number") ? [] : (rollout as readonly RolloutRow[]).filter((r) => r.agents === 100 || r.agents === 1000);
    for (const n of rollout.every((r) => typeof r === "number") ? (rollout as number[]) : []) rows.push(await rolloutBench(n, log));
    for (const r of rows) netfleetRollout.push({ agents: r.agents, convergeMs: r.convergeMs, hostsPerS: r.agents / (r.convergeMs / 1000), ...(r.result ? { result: r.result } : {}) });
    return { hosts, sides, ansibleNoop, netfleetRollout, load: [loadBefore, load1()] };
  } finally {
    await labDown(lab);
  }
}

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "-");

/** The part's lines for the bench's table: what each side does, both sides' figures, and the ratios of this run. */
export function ansibleTable(b: AnsibleBench): string[] {
  const n = b.sides.find((s) => s.tool === "netfleet")!;
  const a = b.sides.find((s) => s.tool === "ansible")!;
  const w = b.ansibleNoop;
  const lines = [
    `netfleet vs Ansible on the lab's ${b.hosts} VM hosts (same assignments; load ${fmt(b.load[0], 1)} -> ${fmt(b.load[1], 1)} on ${cpus()} cores: wall figures on a shared machine are noisy, CPU-ms less so)`,
    "  netfleet: `netfleet-agent apply` of the compiled assignment in each VM host's namespace, both hosts at once (the engine, no control plane)",
    "  Ansible:  vmhost.yml from the lab controller's namespace over SSH (pipelining, ControlPersist 30m, forks 10), the same bridges, bond, patch ports, libvirt networks and OpenFlow tables",
  ];
  for (const s of b.sides) lines.push(`  ${s.tool.padEnd(9)} fromEmptyMs ${fmt(s.fromEmptyMs).padStart(8)}  noopMs ${fmt(s.noopMs).padStart(8)}  noop CPU-ms ${fmt(s.noopCpuMs).padStart(8)}  noop changed ${s.noopChanged}`);
  lines.push(`  ratio Ansible/netfleet: from empty ${fmt(a.fromEmptyMs / n.fromEmptyMs, 1)}x, no-op ${fmt(a.noopMs / n.noopMs, 1)}x wall, ${fmt(a.noopCpuMs / n.noopCpuMs, 1)}x CPU`);
  lines.push(
    `  Ansible no-op over ${w.hosts} hosts: vmhost.yml whole on ${w.hosts / b.hosts} inventory aliases of each lab VM host, each its own SSH connection, all reading the same 2 real OVS and libvirtd; forks ${w.forks}`,
    `    ${fmt(w.wallMs)} ms, ${fmt(w.hostsPerS, 2)} hosts/s; CPU ${fmt(w.controlCpuMs)} ms control node + ${fmt(w.targetCpuMs)} ms targets = ${fmt((w.controlCpuMs + w.targetCpuMs) / w.hosts)} CPU-ms per host; ${w.connections} SSH connections; ${w.changed} changed${w.failed ? `, ${w.failed} FAILED` : ""}`,
  );
  if (b.netfleetRollout.length > 0) lines.push("  netfleet rollouts (this run's rows): a new revision to N simulated agents (real NatsAgent and engine, every host command simulated as a 5-20 ms sleep), canary + 25 % waves, to the last host's report");
  for (const r of b.netfleetRollout) {
    lines.push(`    ${String(r.agents).padStart(5)} agents: ${fmt(r.convergeMs)} ms, ${fmt(r.hostsPerS, 1)} hosts/s = ${fmt(r.hostsPerS / w.hostsPerS, 0)}x Ansible's no-op rate at ${w.hosts}${r.result && r.result !== "success" ? `  result ${r.result}` : ""}`);
  }
  return lines;
}

const cpus = () => readFileSync("/proc/cpuinfo", "utf8").split("\n").filter((l) => l.startsWith("processor")).length;

/**
 * The part as `npm run bench` runs it (one call in run.ts, after its table):
 * measures, prints the part's lines (its JSON goes to the log); a failure
 * is one line in `errors`, never a crash.
 */
export async function ansiblePart(repoRoot: string, log: (line: string) => void, errors: string[], rollout: readonly RolloutRow[]): Promise<AnsibleBench | undefined> {
  try {
    const b = await ansibleBench(repoRoot, log, rollout);
    process.stdout.write(`${ansibleTable(b).join("\n")}\n`);
    log(`ansible part: ${JSON.stringify(b)}`);
    return b;
  } catch (err) {
    log(`ansible part failed: ${(err as Error).stack ?? String(err)}`);
    errors.push(`ansible (netfleet vs Ansible): ${(err as Error).message.split("\n")[0]}`);
    return undefined;
  }
}

// `node test/bench/ansible/bench.ts [AGENTS...] [--rows FILE] [--aliases N]`: this part alone (under flock on the lab
// lock; rollouts of 1,000+ agents under the bench lock). AGENTS: rollouts run here (default 100 1000); --rows FILE: JSON
// lines of rollout rows instead (what `test/bench/rollout.ts N` prints); --aliases N: aliases per VM host (default 50).
if (import.meta.main) {
  const argv = process.argv.slice(2);
  const opt = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
  const rowsFile = opt("--rows");
  const aliases = Number(opt("--aliases") ?? ALIASES);
  if (!Number.isInteger(aliases) || aliases < 1 || aliases > 999) throw new Error(`--aliases ${opt("--aliases")}: 1 to 999`);
  const agents = argv.filter((a, k) => /^\d+$/.test(a) && argv[k - 1] !== "--aliases").map(Number);
  // The rows file is read at the end: its rollouts may still be running (under the bench lock) while the lab part runs.
  const b = await ansibleBench(join(import.meta.dirname, "..", "..", ".."), (l) => process.stderr.write(`${l}\n`), rowsFile ? [] : agents.length ? agents : [100, 1000], aliases);
  if (rowsFile) {
    const rows = readFileSync(rowsFile, "utf8").split("\n").filter((l) => l.trim().startsWith("{")).map((l) => JSON.parse(l) as RolloutRow);
    b.netfleetRollout = rows.map((r) => ({ agents: r.agents, convergeMs: r.convergeMs, hostsPerS: r.agents / (r.convergeMs / 1000), ...(r.result ? { result: r.result } : {}) }));
  }
  process.stdout.write(`${ansibleTable(b).join("\n")}\n${JSON.stringify(b)}\n`);
}
