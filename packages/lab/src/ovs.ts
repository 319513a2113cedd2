import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { netnsExec, vsctl, type LabExec } from "./exec.ts";
import { pidfileAlive, pidInNetns, terminate } from "./procs.ts";
import type { OvsPaths } from "./topology.ts";

const SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";

export interface OvsPids {
  ovsdb?: number;
  vswitchd?: number;
}

export function ovsPids(p: OvsPaths): OvsPids {
  const out: OvsPids = {};
  const db = pidfileAlive(p.dbPid, "ovsdb-server");
  const vs = pidfileAlive(p.vsPid, "ovs-vswitchd");
  if (db !== undefined) out.ovsdb = db;
  if (vs !== undefined) out.vswitchd = vs;
  return out;
}

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
