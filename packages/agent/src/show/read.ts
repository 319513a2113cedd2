import { constants } from "node:fs";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ExecError, type Runner } from "../exec/runner.ts";
import { parseNetList } from "../resources/libvirt.ts";
import { ovsObserveArgv, parseOvsState } from "../resources/ovsdb.ts";
import { countersReadsOf, ovsStatsArgv, appctlArgv } from "./read-counters.ts";
import type { HostAccess } from "../resources/types.ts";
import type { Toolbox } from "../tools.ts";

/**
 * What `show` reads of a host, read-only: the commands the resources observe
 * with (plus counters: `ip -s`, `ovs-ofctl dump-flows` with its stats, the
 * nft listing with its counters) and the lease files. Kept as the tools
 * printed it, so that view.ts (pure) turns it into a HostView and unit
 * tests drive it with captured output.
 */

/** One command's outcome: what it printed and its exit code (a tool that could not start: 127 and the error). */
export interface RawRead {
  argv: string[];
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Everything show reads of a host, as read. */
export interface RawObservation {
  host: string;
  links: RawRead;
  addrs: RawRead;
  ovs: RawRead;
  /** `ovs-ofctl dump-flows` per bridge (bridges of `ovs`). */
  flows: Record<string, RawRead>;
  netList: RawRead;
  /** `virsh net-dumpxml` per network (networks of `netList`). */
  netXml: Record<string, RawRead>;
  nftJson: RawRead;
  nftText: RawRead;
  /** OVS Interface statistics and link state (read-counters.ts); absent in captures older than counters. */
  ovsStats?: RawRead;
  /** `ovs-appctl bond/show` (all bonds), read when OVS has a port of several interfaces. */
  bondShow?: RawRead;
  /** `ovs-appctl lacp/show` (all LACP ports), read when a port has `lacp` active or passive. */
  lacpShow?: RawRead;
  /** Lease files by path: the backend's dnsmasq leases (`<stateDir>/dnsmasq/*.leases`), a VM host's copies (`<runDir>/leases/*.json`). */
  files: Record<string, string>;
  /** Lease files that were not read, by path: why (not a regular file, too big, unreadable). */
  unreadFiles?: Record<string, string>;
  /** When it was read (epoch ms): lease expiry is judged against it. */
  at: number;
}

/** The argv of each read (tool paths from `tools`); flows and net-dumpxml per bridge and network. */
export const showArgv = {
  links: (t: Toolbox) => t.ip("-s", "-details", "-json", "link", "show"),
  addrs: (t: Toolbox) => t.ip("-json", "addr", "show"),
  ovs: (t: Toolbox) => ovsObserveArgv({ owner: "", tools: t }),
  flows: (t: Toolbox, bridge: string) => t.ovsOfctl("dump-flows", bridge),
  netList: (t: Toolbox) => t.virsh("net-list", "--all"),
  netXml: (t: Toolbox, network: string) => t.virsh("net-dumpxml", network),
  nftJson: () => ["nft", "-j", "list", "table", "inet", "netfleet"],
  nftText: () => ["nft", "list", "table", "inet", "netfleet"],
  ovsStats: ovsStatsArgv,
  bondShow: (t: Toolbox) => appctlArgv(t, "bond/show"),
  lacpShow: (t: Toolbox) => appctlArgv(t, "lacp/show"),
};

/** Where the lease files are: the backend's dnsmasq lease files, and a VM host's copies of its backend's leases. */
export function leaseDirs(t: Toolbox): { dnsmasq: string; copies: string } {
  return { dnsmasq: join(t.stateDir, "dnsmasq"), copies: join(t.runDir, "leases") };
}

/** How many lease files show reads at most (one per network). */
const MAX_LEASE_FILES = 64;

/** The largest lease file show reads, bytes (4096 leases of dnsmasq's ~80-byte lines fit 100 times over). */
export const MAX_LEASE_FILE_BYTES = 4 * 1024 * 1024;

/**
 * How show reads lease files on the host itself: a directory listing, and a
 * file opened without following a link and without blocking
 * (O_NOFOLLOW|O_NONBLOCK: a FIFO put there cannot hang show), read only when
 * it is a regular file of at most MAX_LEASE_FILE_BYTES.
 * @throws Error naming what the path is instead (a FIFO, a link, too big).
 */
export const leaseFiles: Pick<HostAccess, "listDir" | "readFile"> = {
  listDir: (path) => readdir(path).then((names) => names.sort(), () => undefined),
  async readFile(path) {
    let handle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return undefined;
      throw new Error(code === "ELOOP" ? "a symbolic link, not read" : `not read (${code ?? (err as Error).message})`);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new Error(`not a regular file (${st.isFIFO() ? "a FIFO" : st.isDirectory() ? "a folder" : "a device or socket"}), not read`);
      if (st.size > MAX_LEASE_FILE_BYTES) throw new Error(`${st.size} bytes, over ${MAX_LEASE_FILE_BYTES}: not read`);
      return await handle.readFile({ encoding: "utf8" });
    } finally {
      await handle.close();
    }
  },
};

/** Runs one read; a failure (exit code, or a tool missing) is kept as the outcome, never thrown. */
async function readOne(runner: Runner, argv: string[]): Promise<RawRead> {
  try {
    const r = await runner.run({ argv, mutating: false }, { allowFailure: true });
    return { argv, stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  } catch (err) {
    return { argv, stdout: "", stderr: (err as Error).message, exitCode: err instanceof ExecError ? err.exitCode : 127 };
  }
}

/** The names in the output of a read that succeeded, or none (the view reports the failure). */
function namesOf(read: RawRead, parse: (stdout: string) => Iterable<string>): string[] {
  if (read.exitCode !== 0) return [];
  try {
    return [...parse(read.stdout)];
  } catch {
    return [];
  }
}

/**
 * Reads the host for `show`: every command only reads (`mutating: false`),
 * in two rounds (the bridges and networks found in the first give the
 * per-bridge and per-network reads of the second). Never throws for a tool
 * that fails or is missing: its outcome is kept and the view says so.
 */
export async function readHost(o: { host: string; runner: Runner; tools: Toolbox; files: Pick<HostAccess, "listDir" | "readFile">; now?: () => number }): Promise<RawObservation> {
  const { runner, tools: t } = o;
  const [links, addrs, ovs, netList, nftJson, nftText, ovsStats] = await Promise.all([
    readOne(runner, showArgv.links(t)),
    readOne(runner, showArgv.addrs(t)),
    readOne(runner, showArgv.ovs(t)),
    readOne(runner, showArgv.netList(t)),
    readOne(runner, showArgv.nftJson()),
    readOne(runner, showArgv.nftText()),
    readOne(runner, showArgv.ovsStats(t)),
  ]);
  const wanted = ovs.exitCode === 0 ? countersReadsOf(ovs.stdout) : { bond: false, lacp: false };
  const bridges = namesOf(ovs, (s) => parseOvsState(s).bridges.keys()).sort();
  const networks = namesOf(netList, (s) => parseNetList(s).keys()).sort();
  const dirs = leaseDirs(t);
  const [flowReads, xmlReads, { files, unread }, bondShow, lacpShow] = await Promise.all([
    Promise.all(bridges.map((b) => readOne(runner, showArgv.flows(t, b)))),
    Promise.all(networks.map((n) => readOne(runner, showArgv.netXml(t, n)))),
    readLeaseFiles(o.files, dirs),
    wanted.bond ? readOne(runner, showArgv.bondShow(t)) : undefined,
    wanted.lacp ? readOne(runner, showArgv.lacpShow(t)) : undefined,
  ]);
  return {
    host: o.host,
    links,
    addrs,
    ovs,
    flows: Object.fromEntries(bridges.map((b, i) => [b, flowReads[i]!])),
    netList,
    netXml: Object.fromEntries(networks.map((n, i) => [n, xmlReads[i]!])),
    nftJson,
    nftText,
    ovsStats,
    ...(bondShow ? { bondShow } : {}),
    ...(lacpShow ? { lacpShow } : {}),
    files,
    ...(Object.keys(unread).length > 0 ? { unreadFiles: unread } : {}),
    at: (o.now ?? Date.now)(),
  };
}

async function readLeaseFiles(files: Pick<HostAccess, "listDir" | "readFile">, dirs: { dnsmasq: string; copies: string }): Promise<{ files: Record<string, string>; unread: Record<string, string> }> {
  const paths: string[] = [];
  for (const [dir, suffix] of [
    [dirs.dnsmasq, ".leases"],
    [dirs.copies, ".json"],
  ] as const) {
    for (const name of (await files.listDir(dir).catch(() => undefined)) ?? []) if (name.endsWith(suffix)) paths.push(join(dir, name));
  }
  const out: Record<string, string> = {};
  const unread: Record<string, string> = {};
  for (const path of paths.slice(0, MAX_LEASE_FILES)) {
    try {
      const text = await files.readFile(path);
      if (text !== undefined) out[path] = text;
    } catch (err) {
      unread[path] = (err as Error).message;
    }
  }
  return { files: out, unread };
}
