import { LabExec, sleep, vsctl } from "./exec.ts";
import { readLabState } from "./state.ts";
import type { Topology, TopoHost, TopoVm } from "./topology.ts";
import type { LabOptions } from "./types.ts";

/**
 * The inventory's VMs and the lab's stranger namespaces: everything that is
 * a namespace plugged into a VM bridge. `strangers` is absent in a lab.json
 * written before strangers existed.
 */
export function namespaceVms(t: Topology): TopoVm[] {
  return [...t.vms, ...(t.strangers ?? [])];
}

/**
 * ovs-vsctl arguments (one `--`-joined piece of a transaction) that plug a
 * namespace VM's host-side veth into its bridge the way libvirt plugs a tap:
 * Interface external_ids attached-mac (the guest MAC), vm-id and iface-id;
 * the Port is marked as the lab's (`netfleet-lab=vm` or `stranger`).
 */
function plugArgs(t: Topology, v: TopoVm): string[] {
  const role = (t.strangers ?? []).some((s) => s.name === v.name) ? "stranger" : "vm";
  return [
    "--", "--may-exist", "add-port", v.bridge, v.hostPort,
    "--", "set", "Interface", v.hostPort, `external_ids:attached-mac="${v.mac}"`, `external_ids:vm-id=${v.name}`, `external_ids:iface-id=${v.name}`,
    "--", "set", "Port", v.hostPort, `external_ids:netfleet-lab=${role}`,
  ];
}

/**
 * Unplugs a namespace VM's host-side port from its bridge and plugs it again
 * in a second transaction, the way a VM restarted by libvirt gets a new
 * port: OVS gives it an OpenFlow port number of its own. Returns the port
 * numbers before and after (ovs-vsctl get Interface ofport).
 */
export async function labReplugVm(o: LabOptions, vmName: string): Promise<{ before: number; after: number }> {
  const state = readLabState(o.runDir);
  if (!state) throw new Error(`no lab in ${o.runDir} (run netfleet-lab up)`);
  const t = state.topology;
  const v = namespaceVms(t).find((x) => x.name === vmName);
  if (!v) throw new Error(`lab ${o.prefix} has no namespace VM ${vmName}`);
  const h = t.hosts.find((x) => x.name === v.host)!;
  const x = new LabExec();
  const ofport = async () => Number((await x.read(vsctl(h.ovs.db, "get", "Interface", v.hostPort, "ofport"))).stdout.trim());
  const before = await ofport();
  await x.run(vsctl(h.ovs.db, "--if-exists", "del-port", v.bridge, v.hostPort));
  await x.run(vsctl(h.ovs.db, ...plugArgs(t, v)));
  let after = await ofport();
  for (let i = 0; i < 40 && !(after > 0); i++) {
    await sleep(25);
    after = await ofport();
  }
  return { before, after };
}

/** Adds the host's VM ports (with libvirt's Interface external_ids); true when any was missing or its link new. */
export async function plugVms(x: LabExec, topo: Topology, h: TopoHost, newLinks: Set<string>): Promise<boolean> {
  const vms = namespaceVms(topo).filter((v) => v.host === h.name);
  if (vms.length === 0) return false;
  const present = new Set((await x.read(vsctl(h.ovs.db, "--bare", "--columns=name", "list", "Interface"))).stdout.split("\n").map((l) => l.trim()));
  await x.run(vsctl(h.ovs.db, ...vms.flatMap((v) => plugArgs(topo, v))));
  return vms.some((v) => !present.has(v.hostPort) || newLinks.has(v.name));
}
