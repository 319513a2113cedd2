import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LabExec, sleep } from "./exec.ts";
import { stopLibvirtd } from "./libvirt.ts";
import { stopOvs } from "./ovs.ts";
import { isAlive, labProcesses, namespaceExists, namespacesWithPrefix, netnsInode, readPidfile, terminate } from "./procs.ts";
import { readLabState, RUNDIR_ENTRIES } from "./state.ts";
import { validateOptions } from "./paths.ts";
import type { LabOptions } from "./types.ts";

const KNOWN_DAEMONS = new Set(["ovsdb-server", "ovs-vswitchd", "libvirtd", "qemu-system-x86", "dnsmasq", "node", "MainThread"]);

/**
 * Removes everything the lab made: its processes (pidfiles, then anything
 * inside its namespaces or referring to its run dir), every namespace named
 * `<prefix>-*`, and the run dir. Throws if something is left.
 */
export async function labDown(o: LabOptions): Promise<void> {
  validateOptions(o);
  const state = readLabState(o.runDir);
  const namespaces = new Set(namespacesWithPrefix(o.prefix));
  for (const n of state?.topology.namespaces ?? []) if (namespaceExists(n)) namespaces.add(n);

  // Orderly first: domains and libvirtd, then OVS, by their pidfiles.
  if (state) {
    const t = state.topology;
    await Promise.all(t.hosts.map(async (h) => (h.libvirt ? stopLibvirtd(h.libvirt) : undefined)));
    await Promise.all([t.switchOvs, ...t.hosts.map((h) => h.ovs)].map((p) => stopOvs(p)));
  }
  // Then every pidfile under the run dir that names a daemon of ours, and whatever else is ours.
  const pids = new Set<number>();
  for (const f of pidfilesUnder(o.runDir)) {
    const pid = readPidfile(f);
    if (pid !== undefined && isAlive(pid) && KNOWN_DAEMONS.has(comm(pid))) pids.add(pid);
  }
  const inodes = new Set([...namespaces].map(netnsInode).filter((i): i is number => i !== undefined));
  for (const p of labProcesses({ netnsInodes: inodes, runDir: o.runDir })) pids.add(p.pid);
  const stubborn = await terminate([...pids]);
  if (stubborn.length > 0) throw new Error(`lab ${o.prefix}: processes ${stubborn.join(", ")} survived SIGKILL`);

  const x = new LabExec(10_000);
  await Promise.all([...namespaces].map((n) => x.probe(["ip", "netns", "delete", n])));
  for (let i = 0; i < 40 && namespacesWithPrefix(o.prefix).length > 0; i++) await sleep(25);

  if (existsSync(o.runDir)) {
    const foreign = readdirSync(o.runDir).filter((e) => !RUNDIR_ENTRIES.has(e));
    if (foreign.length > 0) throw new Error(`lab ${o.prefix}: ${o.runDir} holds ${foreign.join(", ")}, which the lab did not make; not deleting it`);
    rmSync(o.runDir, { recursive: true, force: true });
  }
  const leftNs = namespacesWithPrefix(o.prefix);
  const leftProcs = labProcesses({ netnsInodes: new Set(), runDir: o.runDir });
  if (leftNs.length > 0 || leftProcs.length > 0 || existsSync(o.runDir)) {
    throw new Error(
      `lab ${o.prefix} not fully down: namespaces [${leftNs.join(", ")}], processes [${leftProcs.map((p) => `${p.pid} ${p.comm}`).join(", ")}], runDir ${existsSync(o.runDir) ? "present" : "gone"}`,
    );
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

function pidfilesUnder(dir: string, depth = 0): string[] {
  if (depth > 8 || !existsSync(dir)) return [];
  const out: string[] = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory() && !e.isSymbolicLink()) out.push(...pidfilesUnder(p, depth + 1));
    else if (e.isFile() && e.name.endsWith(".pid")) out.push(p);
  }
  return out;
}
