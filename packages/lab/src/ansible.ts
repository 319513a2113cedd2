/**
 * What the Ansible side of the bench (test/bench/ansible/) needs from a lab:
 * an sshd per VM host namespace on its management address (as
 * test/bootstrap does: own host key, own authorized_keys, no PAM, no
 * passwords), VM hosts emptied of what netfleet built there, and the VM
 * ports plugged again the way libvirt plugs a tap when a VM starts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { labStopAgent } from "./agents.ts";
import { LabExec, netnsExec, virsh, vsctl, waitFor } from "./exec.ts";
import { pidfileAlive } from "./procs.ts";
import { readLabState } from "./state.ts";
import type { TopoHost } from "./topology.ts";
import type { LabOptions } from "./types.ts";
import { plugVms } from "./vms.ts";

/** One VM host as Ansible reaches it: its management address, the sshd ports there, and where its OVS and libvirtd listen. */
export interface SshTarget {
  host: string;
  namespace: string;
  address: string;
  /** Ports sshd listens on (22 first; more when asked, each a connection of its own for Ansible). */
  ports: number[];
  /** OVS_RUNDIR of the host's OVS: ovs-vsctl and ovs-ofctl find db.sock and <bridge>.mgmt there. */
  ovsRundir: string;
  /** libvirt connection URI of the host's private libvirtd. */
  libvirtUri: string;
  sshdPid: number;
}

/** The lab's SSH side: the controller namespace Ansible runs in, the client key, the known_hosts file holding every target's host key. */
export interface SshTargets {
  /** The namespace on the management network where `netfleet serve` runs: Ansible's control node. */
  controlNs: string;
  dir: string;
  clientKey: string;
  knownHosts: string;
  targets: SshTarget[];
}

const SSHD = "/usr/sbin/sshd";

function keygen(file: string): void {
  rmSync(file, { force: true });
  rmSync(`${file}.pub`, { force: true });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "netfleet-lab-ansible", "-f", file], { stdio: "ignore" });
}

function sshdConfig(dir: string, address: string, ports: number[]): string {
  return [
    ...ports.map((p) => `ListenAddress ${address}:${p}`),
    `HostKey ${dir}/ssh_host_ed25519_key`,
    `PidFile ${dir}/sshd.pid`,
    `AuthorizedKeysFile ${dir}/authorized_keys`,
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    // The lab's run dir sits under /tmp (mode 1777), which StrictModes refuses.
    "StrictModes no",
    "PrintMotd no",
    // Ansible opens one session per task on its ControlMaster connection; 100 forks share one sshd per host.
    "MaxSessions 64",
    "MaxStartups 200:30:400",
    "Subsystem sftp internal-sftp",
    "",
  ].join("\n");
}

function vmHosts(o: LabOptions): { t: NonNullable<ReturnType<typeof readLabState>>["topology"]; hosts: TopoHost[] } {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run netfleet-lab up)`);
  return { t: state.topology, hosts: state.topology.hosts.filter((h) => h.role === "vmhost") };
}

/**
 * Starts (or keeps) one sshd in each VM host's namespace on its management
 * address, listening on port 22 and on `extraPorts` (the bench's 100-host
 * inventory gives each alias a port of its own, so each is a connection of
 * its own). Host keys are made here and written to known_hosts, so the
 * client checks them. The lab's down stops these sshds (they run in its
 * namespaces). Throws when a VM host has no management address or sshd
 * does not listen within 10 s.
 */
export async function labSshd(o: LabOptions, extraPorts: number[] = []): Promise<SshTargets> {
  const { t, hosts } = vmHosts(o);
  const dir = join(o.runDir, "ans");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // sshd refuses to start without its privilege separation directory (Debian makes it in the unit's RuntimeDirectory).
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const clientKey = join(dir, "id_ed25519");
  if (!existsSync(clientKey)) keygen(clientKey);
  const ports = [22, ...extraPorts];
  const known: string[] = [];
  const targets: SshTarget[] = [];
  const x = new LabExec();
  for (const h of hosts) {
    if (!h.mgmtAddress || !h.libvirt) throw new Error(`VM host ${h.name} has no management address or libvirtd in this lab`);
    const address = h.mgmtAddress.split("/")[0]!;
    const hdir = join(dir, h.name);
    mkdirSync(hdir, { recursive: true, mode: 0o700 });
    const hostKey = join(hdir, "ssh_host_ed25519_key");
    if (!existsSync(hostKey)) keygen(hostKey);
    writeFileSync(join(hdir, "authorized_keys"), readFileSync(`${clientKey}.pub`));
    const config = sshdConfig(hdir, address, ports);
    const cfgFile = join(hdir, "sshd_config");
    const pidFile = join(hdir, "sshd.pid");
    let pid = pidfileAlive(pidFile, "sshd");
    if (pid !== undefined && (!existsSync(cfgFile) || readFileSync(cfgFile, "utf8") !== config)) {
      process.kill(pid, "SIGTERM");
      await waitFor(`sshd ${pid} of ${h.name} gone`, 5000, () => pidfileAlive(pidFile, "sshd") === undefined, 50);
      pid = undefined;
    }
    writeFileSync(cfgFile, config);
    if (pid === undefined) {
      rmSync(pidFile, { force: true });
      await x.run(netnsExec(h.namespace, [SSHD, "-f", cfgFile, "-E", join(hdir, "sshd.log")]));
      await waitFor(`sshd of ${h.name} on ${address}`, 10_000, () => pidfileAlive(pidFile, "sshd") !== undefined, 50);
      pid = pidfileAlive(pidFile, "sshd")!;
    }
    const pub = readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    for (const p of ports) known.push(`${p === 22 ? address : `[${address}]:${p}`} ${pub}`);
    targets.push({ host: h.name, namespace: h.namespace, address, ports, ovsRundir: h.ovs.dir, libvirtUri: h.libvirt.uri, sshdPid: pid });
  }
  const knownHosts = join(dir, "known_hosts");
  writeFileSync(knownHosts, `${known.join("\n")}\n`);
  return { controlNs: t.controller.namespace, dir, clientKey, knownHosts, targets };
}

/**
 * Empties the lab's VM hosts of what netfleet built: their agent daemons
 * stopped (by pid, so nothing repairs the host behind Ansible's back), every
 * OVS bridge deleted (its ports and OpenFlow rules with it) and every
 * libvirt network stopped and undefined. Domains stay defined. Returns the
 * bridges and networks removed per host.
 */
export async function labEmptyVmHosts(o: LabOptions): Promise<Record<string, { bridges: string[]; networks: string[] }>> {
  const { hosts } = vmHosts(o);
  const x = new LabExec();
  const out: Record<string, { bridges: string[]; networks: string[] }> = {};
  for (const h of hosts) {
    await labStopAgent(o, h.name);
    const bridges = (await x.read(vsctl(h.ovs.db, "list-br"))).stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    if (bridges.length > 0) await x.run(vsctl(h.ovs.db, ...bridges.flatMap((b) => ["--", "--if-exists", "del-br", b])));
    const uri = h.libvirt!.uri;
    const active = new Set((await x.read(virsh(uri, "net-list", "--name"))).stdout.split("\n").map((l) => l.trim()).filter(Boolean));
    const networks = (await x.read(virsh(uri, "net-list", "--all", "--name"))).stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    for (const n of networks) {
      if (active.has(n)) await x.run(virsh(uri, "net-destroy", n));
      await x.run(virsh(uri, "net-undefine", n));
    }
    out[h.name] = { bridges, networks };
  }
  return out;
}

/** Plugs the VM hosts' namespace VMs into their bridges again (as libvirt does when a VM starts); throws when a bridge is missing. */
export async function labPlugVmPorts(o: LabOptions): Promise<void> {
  const { t, hosts } = vmHosts(o);
  const x = new LabExec();
  for (const h of hosts) await plugVms(x, t, h, new Set());
}
