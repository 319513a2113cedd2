import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LabExec, netnsExec, vsctl } from "./exec.ts";
import { pidfileAlive, pidInNetns, terminate } from "./procs.ts";
import { labHostOf, recordOvs, writeLabState } from "./state.ts";
import type { OvsPaths } from "./paths.ts";
import type { LabOptions } from "./types.ts";

const SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";

/** The pids of a namespace's OVS daemons that are alive (a pidfile whose process runs that program); absent when not running. */
export interface OvsPids {
  ovsdb?: number;
  vswitchd?: number;
}

/** The live OVS daemons of one OVS instance of the lab, from its pidfiles. */
export function ovsPids(p: OvsPaths): OvsPids {
  const out: OvsPids = {};
  const db = pidfileAlive(p.dbPid, "ovsdb-server");
  const vs = pidfileAlive(p.vsPid, "ovs-vswitchd");
  if (db !== undefined) out.ovsdb = db;
  if (vs !== undefined) out.vswitchd = vs;
  return out;
}

/** Stops one OVS instance of the lab (its live ovs-vswitchd and ovsdb-server, by pid); nothing when neither runs. */
export async function stopOvs(p: OvsPaths): Promise<void> {
  const pids = ovsPids(p);
  await terminate([pids.vswitchd, pids.ovsdb].filter((x): x is number => x !== undefined));
}

/**
 * One ovsdb-server + ovs-vswitchd inside namespace `ns`, with its own db,
 * socket, run dir, pidfiles and logs under `p.dir`. Keeps a running pair;
 * restarts a half-dead one on its existing database, or any when `restart`
 * (a userspace-datapath vswitchd does not reopen a device that was deleted
 * and created again under the same name).
 */
export async function ensureOvs(x: LabExec, ns: string, p: OvsPaths, restart = false): Promise<OvsPids> {
  const running = ovsPids(p);
  if (!restart && running.ovsdb !== undefined && running.vswitchd !== undefined && pidInNetns(running.vswitchd, ns)) return running;
  await stopOvs(p);
  mkdirSync(p.dir, { recursive: true });
  const env = ["env", `OVS_RUNDIR=${p.dir}`, `OVS_LOGDIR=${p.dir}`, `OVS_DBDIR=${p.dir}`];
  for (const stale of [p.db, p.dbCtl, p.vsCtl, join(p.dir, ".conf.db.~lock~")]) rmSync(stale, { force: true });
  if (!existsSync(p.conf)) await x.run(["ovsdb-tool", "create", p.conf, SCHEMA]);
  await x.run(
    netnsExec(ns, [
      ...env,
      "ovsdb-server",
      p.conf,
      `--remote=punix:${p.db}`,
      `--pidfile=${p.dbPid}`,
      `--unixctl=${p.dbCtl}`,
      `--log-file=${join(p.dir, "ovsdb-server.log")}`,
      "--detach",
      "--no-chdir",
      "-vconsole:off",
    ]),
  );
  await x.run(vsctl(p.db, "--no-wait", "init"));
  await x.run(
    netnsExec(ns, [
      ...env,
      "ovs-vswitchd",
      `unix:${p.db}`,
      `--pidfile=${p.vsPid}`,
      `--unixctl=${p.vsCtl}`,
      `--log-file=${join(p.dir, "ovs-vswitchd.log")}`,
      "--detach",
      "--no-chdir",
      "-vconsole:off",
    ]),
  );
  const pids = ovsPids(p);
  if (pids.ovsdb === undefined || pids.vswitchd === undefined) throw new Error(`OVS in ${ns} did not stay up; logs in ${p.dir}`);
  return pids;
}

/**
 * Restarts Open vSwitch on one lab host the way a service restart (or a
 * crash and its supervisor) does: ovs-vswitchd and ovsdb-server stopped by
 * pid (SIGTERM, then SIGKILL), then started again on their database, so
 * bridges, ports and fail modes come back and OpenFlow rules do not.
 * Records the new pids in lab.json and returns them.
 */
export async function labRestartOvs(o: LabOptions, hostName: string): Promise<{ ovsdb?: number; vswitchd?: number }> {
  const { state, h } = labHostOf(o, hostName);
  const pids = await ensureOvs(new LabExec(), h.namespace, h.ovs, true);
  recordOvs(state, h.namespace, pids);
  writeLabState(o.runDir, state);
  return pids;
}
