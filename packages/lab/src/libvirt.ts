import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { XMLBuilder } from "fast-xml-parser";
import { netnsExec, virsh, waitFor, type LabExec } from "./exec.ts";
import { isAlive, pidfileAlive, pidInNetns, readPidfile, terminate } from "./procs.ts";
import type { LibvirtPaths } from "./paths.ts";
import type { TopoDomain } from "./topology.ts";

/** QEMU capabilities probed by a cold libvirtd (~8 s), copied into later starts (~0.15 s). */
export const CAPS_SEED = "/var/cache/netfleet-lab/libvirt";
const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), "launcher.ts");
const QEMU_USER = "libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin";

const QEMU_CONF = [
  'user = "root"',
  'group = "root"',
  "dynamic_ownership = 0",
  "remember_owner = 0",
  'security_driver = "none"',
  'stdio_handler = "file"',
  "",
].join("\n");

function prepare(p: LibvirtPaths): void {
  for (const d of [p.etc, join(p.run, "libvirt"), join(p.varlib, "libvirt"), p.cache, p.log]) mkdirSync(d, { recursive: true });
  for (const f of ["libvirt.conf", "libvirt-admin.conf"]) {
    const src = join("/etc/libvirt", f);
    if (existsSync(src) && !existsSync(join(p.etc, f))) cpSync(src, join(p.etc, f));
  }
  writeFileSync(join(p.etc, "libvirtd.conf"), 'log_outputs="3:file:/run/libvirt/libvirtd.log"\n');
  writeFileSync(join(p.etc, "qemu.conf"), QEMU_CONF);
  // The QEMU driver resolves the user libvirt-qemu (Debian's build default) before it reads qemu.conf,
  // and libvirt-daemon-system, which creates it, is not installed: give libvirtd its own passwd/group.
  const passwd = readFileSync("/etc/passwd", "utf8");
  const group = readFileSync("/etc/group", "utf8");
  const nl = (s: string) => (s.endsWith("\n") ? s : `${s}\n`);
  writeFileSync(p.passwd, nl(passwd) + (/^libvirt-qemu:/m.test(passwd) ? "" : `${QEMU_USER}\n`));
  writeFileSync(
    p.group,
    nl(group) + (/^libvirt-qemu:/m.test(group) ? "" : "libvirt-qemu:x:64055:\n") + (/^kvm:/m.test(group) ? "" : "kvm:x:64056:\n"),
  );
}

/** The pid of the lab's libvirtd on a host (from its pidfile, when that process is a running libvirtd), else undefined. */
export function libvirtdPid(p: LibvirtPaths): number | undefined {
  return pidfileAlive(p.pidfile, "libvirtd");
}

async function answers(x: LabExec, p: LibvirtPaths): Promise<boolean> {
  return (await x.probe(virsh(p.uri, "version"))).exitCode === 0;
}

/** Kills the domains' QEMU processes (by their pidfiles), then libvirtd. */
export async function stopLibvirtd(p: LibvirtPaths): Promise<void> {
  const pids: number[] = [];
  const qemuDir = join(p.run, "libvirt", "qemu");
  if (existsSync(qemuDir)) {
    for (const f of readdirSync(qemuDir)) {
      if (!f.endsWith(".pid")) continue;
      const pid = readPidfile(join(qemuDir, f));
      if (isAlive(pid)) pids.push(pid!);
    }
  }
  const lv = libvirtdPid(p);
  if (pids.length > 0) await terminate(pids);
  if (lv !== undefined) await terminate([lv]);
}

/**
 * One libvirtd per host namespace, in a private mount namespace (see
 * launcher.ts), talking to that host's OVS through OVS_RUNDIR. Seeds the
 * QEMU capabilities cache from CAPS_SEED and refreshes the seed after a
 * cold start.
 */
export async function ensureLibvirtd(x: LabExec, ns: string, p: LibvirtPaths, ovsDir: string, log: (l: string) => void): Promise<number> {
  const running = libvirtdPid(p);
  if (running !== undefined && pidInNetns(running, ns) && (await answers(x, p))) return running;
  await stopLibvirtd(p);
  prepare(p);
  mkdirSync(ovsDir, { recursive: true }); // bound into libvirtd's private /run before OVS may have started
  const capsDir = join(p.cache, "libvirt");
  const seeded = existsSync(CAPS_SEED) && !existsSync(capsDir);
  if (seeded) cpSync(CAPS_SEED, capsDir, { recursive: true });
  const warm = existsSync(capsDir);
  rmSync(p.socket, { force: true });
  rmSync(p.pidfile, { force: true });
  await x.run(
    netnsExec(ns, ["unshare", "-m", "--propagation", "private", "env", `OVS_RUNDIR=${ovsDir}`, process.execPath, LAUNCHER, p.dir, ovsDir]),
  );
  const started = Date.now();
  await waitFor(`libvirtd in ${ns} (log: ${join(p.run, "libvirt", "libvirtd.log")})`, warm ? 30_000 : 90_000, async () => {
    if (readPidfile(p.pidfile) !== undefined && libvirtdPid(p) === undefined) throw new Error(`libvirtd in ${ns} exited; log: ${join(p.run, "libvirt", "libvirtd.log")}`);
    return existsSync(p.socket) && (await answers(x, p));
  }, 100);
  log(`libvirtd ${ns} ${warm ? "warm" : "cold"} start ${Date.now() - started} ms`);
  if (!warm) saveSeed(capsDir);
  const pid = libvirtdPid(p);
  if (pid === undefined) throw new Error(`libvirtd in ${ns} did not stay up`);
  return pid;
}

function saveSeed(capsDir: string): void {
  if (!existsSync(join(capsDir, "qemu"))) return;
  mkdirSync(dirname(CAPS_SEED), { recursive: true });
  const tmp = `${CAPS_SEED}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  cpSync(capsDir, tmp, { recursive: true });
  rmSync(CAPS_SEED, { recursive: true, force: true });
  renameSync(tmp, CAPS_SEED);
}

/** Escapes names and values (`processEntities`); empty elements are written `<x/>`. */
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: "@", format: true, indentBy: "  ", suppressEmptyNode: true, processEntities: true });

/**
 * The libvirt domain XML of a lab VM: 64 MiB, one vCPU, KVM when /dev/kvm
 * exists (else TCG), one virtio NIC on the libvirt network's port group with
 * the VM's MAC. Names come from the inventory and are escaped.
 */
function domainXml(d: TopoDomain): string {
  const type = existsSync("/dev/kvm") ? "kvm" : "qemu";
  return builder.build({
    domain: {
      "@type": type,
      name: d.name,
      memory: { "@unit": "MiB", "#text": "64" },
      vcpu: "1",
      os: { type: { "@arch": "x86_64", "#text": "hvm" } },
      devices: {
        emulator: "/usr/bin/qemu-system-x86_64",
        interface: {
          "@type": "network",
          source: { "@network": d.network, "@portgroup": d.portgroup },
          mac: { "@address": d.mac },
          model: { "@type": "virtio" },
        },
      },
    },
  });
}

/**
 * Defines the paused-domain stand-in of a VM (never started here: tests
 * start and stop it). The XML goes through a file: the runner feeds stdin
 * through a socket, which `/dev/stdin` cannot open (ENXIO).
 */
export async function ensureDomain(x: LabExec, p: LibvirtPaths, d: TopoDomain): Promise<void> {
  const names = (await x.read(virsh(p.uri, "list", "--all", "--name"))).stdout.split("\n").map((l) => l.trim());
  if (names.includes(d.name)) return;
  const file = join(p.dir, `${d.name}.xml`);
  writeFileSync(file, domainXml(d));
  await x.run(virsh(p.uri, "define", file));
}

/**
 * A domain's state as `virsh domstate` prints it (e.g. "running",
 * "paused"; undefined when virsh does not know the domain) and, while it runs
 * or is paused, the host-side port libvirt made for its NIC (`vnetN`; "" otherwise).
 */
export async function domainState(x: LabExec, uri: string, name: string): Promise<{ state?: string; hostPort: string }> {
  const st = await x.probe(virsh(uri, "domstate", name));
  if (st.exitCode !== 0) return { hostPort: "" };
  const state = st.stdout.trim();
  let hostPort = "";
  if (state === "running" || state === "paused") {
    const ifl = await x.probe(virsh(uri, "domiflist", name));
    hostPort = /^\s*(vnet\d+)\s/m.exec(ifl.stdout)?.[1] ?? "";
  }
  return { state, hostPort };
}
