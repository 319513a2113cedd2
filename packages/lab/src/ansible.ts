/**
 * What the Ansible side of the bench (test/bench/ansible/) needs from a lab:
 * an sshd per VM host namespace on its management address (sshd.ts, as
 * test/bootstrap starts it: own host key, own authorized_keys, no PAM, no
 * passwords), VM hosts emptied of what netfleet built there, and the VM
 * ports plugged again the way libvirt plugs a tap when a VM starts.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { labStopAgent } from "./agents.ts";
import { LabExec, netnsExec, virsh, vsctl } from "./exec.ts";
import { sshdArgv, sshKeygen, startSshd, stopSshd, writeSshdFiles } from "./sshd.ts";
import { readLabState } from "./state.ts";
import type { TopoHost } from "./topology.ts";
import type { LabOptions } from "./types.ts";
import { plugVms } from "./vms.ts";

/** One VM host as Ansible reaches it: its management address, sshd's port there, and where its OVS and libvirtd listen. */
export interface SshTarget {
  host: string;
  namespace: string;
  address: string;
  /** The port sshd listens on (22). */
  port: number;
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

function vmHosts(o: LabOptions): { t: NonNullable<ReturnType<typeof readLabState>>["topology"]; hosts: TopoHost[] } {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run netfleet-lab up)`);
  return { t: state.topology, hosts: state.topology.hosts.filter((h) => h.role === "vmhost") };
}

/**
 * Starts (or keeps) one sshd (sshd.ts) in each VM host's namespace on its
 * management address, port 22. Host keys are made here and written to
 * known_hosts, so the client checks them. The lab's down stops these sshds
 * (they run in its namespaces). Throws when a VM host has no management
 * address or sshd does not run within 10 s (with sshd's own reason from
 * its log).
 */
export async function labSshd(o: LabOptions): Promise<SshTargets> {
  const { t, hosts } = vmHosts(o);
  const dir = join(o.runDir, "ans");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const clientKey = join(dir, "id_ed25519");
  if (!existsSync(clientKey)) sshKeygen(clientKey, "netfleet-lab-ansible");
  const port = 22;
  const known: string[] = [];
  const targets: SshTarget[] = [];
  for (const h of hosts) {
    if (!h.mgmtAddress || !h.libvirt) throw new Error(`VM host ${h.name} has no management address or libvirtd in this lab`);
    const address = h.mgmtAddress.split("/")[0]!;
    const hdir = join(dir, h.name);
    const { configChanged, hostPub } = writeSshdFiles(hdir, [`${address}:${port}`], readFileSync(`${clientKey}.pub`, "utf8"));
    if (configChanged) await stopSshd(hdir, h.name);
    const pid = await startSshd(hdir, netnsExec(h.namespace, sshdArgv(hdir)), `${h.name} on ${address}:${port}`);
    known.push(`${address} ${hostPub}`);
    targets.push({ host: h.name, namespace: h.namespace, address, port, ovsRundir: h.ovs.dir, libvirtUri: h.libvirt.uri, sshdPid: pid });
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
