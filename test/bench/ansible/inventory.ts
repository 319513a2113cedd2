/**
 * The Ansible inventory of a lab's VM hosts, made from the same compiled
 * assignments netfleet rolls out (so both sides are given the same work):
 * each host's OVS bridges, bond, patch ports with their VLAN tags, libvirt
 * networks and VM-port policies as host vars for vmhost.yml, and how to
 * reach it over SSH (packages/lab/src/ansible.ts labSshd). JSON is YAML, so
 * the file is an Ansible YAML inventory (ansible.builtin.yaml plugin).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HostAssignment, LibvirtNetworkSpec, OvsBridgeSpec, VmPortPolicySpec } from "@netfleet/shared";
import type { LabStatus, SshTargets } from "@netfleet/lab";

/** Host vars of one VM host for vmhost.yml (see the playbook for what each drives). */
export interface VmhostVars {
  ovs_rundir: string;
  libvirt_uri: string;
  flow_dir: string;
  bridges: { name: string; datapath: string; fail_mode?: string }[];
  bonds: { bridge: string; name: string; members: string[]; bond_mode: string; trunks: number[] }[];
  patches: { bridge: string; name: string; peer: string; tag?: number }[];
  libvirt_networks: { name: string; bridge: string; portgroups: LibvirtNetworkSpec["portgroups"] }[];
  policies: PolicyVars[];
}

/** One VM bridge's policy for templates/flows.j2. */
export interface PolicyVars {
  bridge: string;
  uplink_port: string;
  gateway: { ip: string; mac: string };
  isolated_default: boolean;
  /** Every VM of the network (both hosts): MAC (lowercase), isolation, fixed addresses (static ip and extra addresses), cluster groups. */
  vms: { mac: string; isolated: boolean; fixed: string[]; groups: string[] }[];
  /** Cluster group -> member MACs. */
  members: Record<string, string[]>;
  /** MAC -> addresses the backend leased it (a DHCP VM's address comes from its lease). */
  leases: Record<string, string[]>;
}

/**
 * One VM host's vars from its assignment. `leases` come from the lab's
 * status (each VM's lease, as the backend's dnsmasq gave it): what netfleet's
 * agents receive from the backend, an Ansible inventory takes from the DHCP
 * server the way a dynamic inventory would. Throws on a resource kind the
 * playbook does not do (it covers the lab's vmhost role: ovs-trunk uplink).
 */
export function vmhostVars(a: HostAssignment, target: { ovsRundir: string; libvirtUri: string }, flowDir: string, status: LabStatus): VmhostVars {
  const v: VmhostVars = { ovs_rundir: target.ovsRundir, libvirt_uri: target.libvirtUri, flow_dir: flowDir, bridges: [], bonds: [], patches: [], libvirt_networks: [], policies: [] };
  for (const r of a.resources) {
    if (r.kind === "ovs-bridge") addBridge(v, r);
    else if (r.kind === "libvirt-network") v.libvirt_networks.push({ name: r.name, bridge: r.bridge, portgroups: r.portgroups });
    else if (r.kind === "vm-port-policy") v.policies.push(policyVars(r, status));
    else if (r.kind !== "prune") throw new Error(`${a.host}: the playbook does not do ${r.kind} resources`);
  }
  return v;
}

function addBridge(v: VmhostVars, b: OvsBridgeSpec): void {
  v.bridges.push({ name: b.name, datapath: b.datapath, ...(b.failMode ? { fail_mode: b.failMode } : {}) });
  for (const p of b.ports) {
    if (p.type === "bond") v.bonds.push({ bridge: b.name, name: p.name, members: p.members!, bond_mode: p.bond_mode ?? "active-backup", trunks: p.trunks ?? [] });
    else if (p.type === "patch") v.patches.push({ bridge: b.name, name: p.name, peer: p.peer!, ...(p.tag ? { tag: p.tag } : {}) });
    else throw new Error(`bridge ${b.name}: the playbook does not do ${p.type} ports`);
  }
}

function policyVars(p: VmPortPolicySpec, status: LabStatus): PolicyVars {
  const members: Record<string, string[]> = {};
  for (const vm of p.vms) for (const g of vm.groups ?? []) (members[g] ??= []).push(vm.mac.toLowerCase());
  const leases: Record<string, string[]> = {};
  for (const vm of status.vms) if (vm.network === p.network && vm.lease?.ip) (leases[vm.mac.toLowerCase()] ??= []).push(vm.lease.ip);
  return {
    bridge: p.name,
    uplink_port: p.uplinkPort,
    gateway: p.gateway,
    isolated_default: p.isolatedDefault,
    vms: p.vms.map((vm) => ({ mac: vm.mac.toLowerCase(), isolated: vm.isolated, fixed: [...(vm.ip ? [vm.ip] : []), ...(vm.extraAddresses ?? [])], groups: vm.groups ?? [] })),
    members,
    leases,
  };
}

/**
 * Writes `<dir>/inventory.yml`: group `vmhosts` with each lab VM host, or,
 * with `aliasesPerHost` N > 1 (`<dir>/inventory-Nx.yml`), N aliases of each (`hosta-001`...), all on
 * that host's sshd (port 22) but each with a ControlPath of its own
 * (`ansible_control_path`), so each alias is an SSH connection of its own
 * (own TCP connection, key exchange, authentication and sessions), all
 * configuring that host's one OVS and libvirtd (the no-op throughput run).
 * An alias shares its host's flow dir: the rendered tables are the same,
 * so after a run on the host itself an alias's run is a no-op too.
 * Host keys are checked against labSshd's known_hosts. Returns the file's
 * path; throws on N outside 1..999 or a target without an assignment.
 */
export function writeInventory(dir: string, ssh: SshTargets, assignments: HostAssignment[], status: LabStatus, aliasesPerHost = 1): string {
  if (!Number.isInteger(aliasesPerHost) || aliasesPerHost < 1 || aliasesPerHost > 999) throw new Error(`aliasesPerHost ${aliasesPerHost}: 1 to 999`);
  const hosts: Record<string, Record<string, unknown>> = {};
  for (const t of ssh.targets) {
    const a = assignments.find((x) => x.host === t.host);
    if (!a) throw new Error(`no assignment for ${t.host}`);
    const vars = vmhostVars(a, t, join(dir, "flows", t.host), status);
    for (let i = 0; i < aliasesPerHost; i++) {
      const name = aliasesPerHost === 1 ? t.host : `${t.host}-${String(i + 1).padStart(3, "0")}`;
      hosts[name] = { ansible_host: t.address, ansible_port: t.port, ...(aliasesPerHost > 1 ? { ansible_control_path: `%(directory)s/${name}` } : {}), ...vars };
    }
  }
  const inventory = {
    vmhosts: {
      hosts,
      vars: {
        ansible_user: "root",
        ansible_connection: "ssh",
        ansible_python_interpreter: "/usr/bin/python3",
        ansible_ssh_private_key_file: ssh.clientKey,
        ansible_ssh_common_args: `-o UserKnownHostsFile=${ssh.knownHosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes`,
      },
    },
  };
  const file = join(dir, aliasesPerHost === 1 ? "inventory.yml" : `inventory-${aliasesPerHost}x.yml`);
  writeFileSync(file, `${JSON.stringify(inventory, null, 1)}\n`);
  return file;
}
