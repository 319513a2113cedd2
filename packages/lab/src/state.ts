import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Topology, TopoHost } from "./topology.ts";
import type { LabOptions } from "./types.ts";

/** runDir/lab.json: what the lab built, for down and status. */
export interface LabState {
  version: 1;
  prefix: string;
  runDir: string;
  inventoryDir: string;
  fingerprint: string;
  topology: Topology;
  /** Daemon pids by role, e.g. `ovs-vswitchd@nf-hosta`, `libvirtd@nf-hosta`. */
  pids: Record<string, number>;
  /**
   * The site folder `netfleet-lab rollout` last rolled out (successfully) to
   * this lab, and when: what `check` and `attack` probe unless told another.
   * Absent after an `up`, which rolls out its own.
   */
  rolledOut?: { dir: string; at: string };
  /** Agent apply results (summary per host) of the last up. */
  agents: Record<string, { exitCode: number; summary?: AgentSummary; wallMs?: number; check?: boolean }>;
  updatedAt: string;
}

/** The counts `netfleet-agent apply --json` prints in its summary. */
export interface AgentSummary {
  ok: number;
  changed: number;
  failed: number;
  pending: number;
}

export const STATE_FILE = "lab.json";
/** Top-level entries of a run dir; down refuses to delete a folder holding anything else. */
export const RUNDIR_ENTRIES = new Set([STATE_FILE, `${STATE_FILE}.tmp`, "hosts", "switch", "assignments", "inet", "vms", "controller", "ans"]);

/** runDir/lab.json, or undefined when there is none (or it is of another version). */
export function readLabState(runDir: string): LabState | undefined {
  try {
    const s = JSON.parse(readFileSync(join(runDir, STATE_FILE), "utf8")) as LabState;
    return s.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Writes runDir/lab.json through a temp file and a rename, so a reader never sees half of it. */
export function writeLabState(runDir: string, s: LabState): void {
  const tmp = join(runDir, `${STATE_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify(s, null, 2) + "\n");
  renameSync(tmp, join(runDir, STATE_FILE));
}

/** Records the pids of a namespace's ovsdb-server and ovs-vswitchd in the state. */
export function recordOvs(state: LabState, ns: string, pids: { ovsdb?: number; vswitchd?: number }): void {
  if (pids.ovsdb !== undefined) state.pids[`ovsdb-server@${ns}`] = pids.ovsdb;
  if (pids.vswitchd !== undefined) state.pids[`ovs-vswitchd@${ns}`] = pids.vswitchd;
}

/** The running lab's state and one of its hosts; throws when there is no lab or no such host. */
export function labHostOf(o: LabOptions, hostName: string): { state: LabState; t: Topology; h: TopoHost } {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run netfleet-lab up)`);
  const h = state.topology.hosts.find((x) => x.name === hostName);
  if (!h) throw new Error(`lab ${o.prefix} has no host ${hostName}`);
  return { state, t: state.topology, h };
}
