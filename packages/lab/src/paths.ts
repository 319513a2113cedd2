/**
 * Where a lab keeps its daemons' files under its run dir (OVS, libvirtd),
 * and the checks on the options that name it: a prefix that can name
 * namespaces, a run dir that is safe and short enough for unix sockets.
 */
import { isAbsolute, join, normalize } from "node:path";
import type { LabOptions } from "./types.ts";

/** One Open vSwitch's files: its database, sockets and pidfiles. */
export interface OvsPaths {
  dir: string;
  conf: string;
  db: string;
  dbPid: string;
  dbCtl: string;
  vsPid: string;
  vsCtl: string;
}

/** One private libvirtd's directories, socket, pidfile and connection URI. */
export interface LibvirtPaths {
  dir: string;
  etc: string;
  run: string;
  varlib: string;
  cache: string;
  log: string;
  passwd: string;
  group: string;
  socket: string;
  pidfile: string;
  uri: string;
}

export const PREFIX_PATTERN = /^[a-z][a-z0-9]{0,7}$/;
const RUNDIR_PATTERN = /^\/[A-Za-z0-9_./-]+$/;
/** sun_path is 108 bytes with its NUL. */
const UNIX_SOCKET_MAX = 107;
/** Mount points replaced inside libvirtd's private mount namespace; the run dir must not live under them. */
export const LIBVIRT_PRIVATE_DIRS = ["/var/lib", "/var/cache", "/var/log", "/etc/libvirt"];

/** Refuses a prefix that cannot name namespaces and a run dir that is unsafe, unnormalized, too close to / or under libvirtd's private dirs. */
export function validateOptions(o: LabOptions): void {
  if (!PREFIX_PATTERN.test(o.prefix)) throw new Error(`lab prefix ${JSON.stringify(o.prefix)} must match ${PREFIX_PATTERN}`);
  if (!isAbsolute(o.runDir) || !RUNDIR_PATTERN.test(o.runDir) || normalize(o.runDir) !== o.runDir || o.runDir.length > 48) {
    throw new Error(`lab runDir ${JSON.stringify(o.runDir)} must be a normalized absolute path of at most 48 safe characters`);
  }
  if (o.runDir.split("/").filter(Boolean).length < 2) throw new Error(`lab runDir ${o.runDir} is too close to /`);
  for (const d of LIBVIRT_PRIVATE_DIRS) {
    if (o.runDir === d || o.runDir.startsWith(`${d}/`)) throw new Error(`lab runDir ${o.runDir} must not be under ${d} (libvirtd gets a private ${d})`);
  }
}

/** The files of an Open vSwitch kept in `dir`. */
export function ovsPaths(dir: string): OvsPaths {
  return {
    dir,
    conf: join(dir, "conf.db"),
    db: join(dir, "db.sock"),
    dbPid: join(dir, "ovsdb-server.pid"),
    dbCtl: join(dir, "ovsdb-server.ctl"),
    vsPid: join(dir, "ovs-vswitchd.pid"),
    vsCtl: join(dir, "ovs-vswitchd.ctl"),
  };
}

/** The directories of a private libvirtd kept in `dir`, and its URI. */
export function libvirtPaths(dir: string): LibvirtPaths {
  const run = join(dir, "run");
  const socket = join(run, "libvirt", "libvirt-sock");
  return {
    dir,
    etc: join(dir, "etc"),
    run,
    varlib: join(dir, "varlib"),
    cache: join(dir, "cache"),
    log: join(dir, "log"),
    passwd: join(dir, "passwd"),
    group: join(dir, "group"),
    socket,
    pidfile: join(run, "libvirt", "libvirtd.pid"),
    uri: `qemu:///system?socket=${socket}`,
  };
}

/** The parts of a topology that hold unix sockets (a structural slice of topology.ts's Topology, so this file does not import it). */
export interface SocketHolders {
  switchOvs: OvsPaths;
  switchBridge: string;
  hosts: readonly { ovs: OvsPaths; libvirt?: LibvirtPaths | undefined }[];
}

/** Refuses a topology whose unix sockets (OVS, libvirtd's admin socket) would be longer than sun_path holds. */
export function checkSocketPaths(t: SocketHolders): void {
  const paths: string[] = [t.switchOvs.db, t.switchOvs.vsCtl, `${t.switchOvs.dir}/${t.switchBridge}.mgmt`];
  for (const h of t.hosts) {
    paths.push(h.ovs.db, h.ovs.vsCtl, `${h.ovs.dir}/br-xxxxxxxxxxxx.mgmt`);
    if (h.libvirt) paths.push(h.libvirt.socket.replace(/libvirt-sock$/, "libvirt-admin-sock"));
  }
  for (const p of paths) {
    if (Buffer.byteLength(p) > UNIX_SOCKET_MAX) throw new Error(`socket path ${p} is longer than ${UNIX_SOCKET_MAX} bytes; use a shorter runDir`);
  }
}
