import { agentDaemonPid, labHost } from "./agents.ts";
import { LabExec, vsctl } from "./exec.ts";
import { domainState, libvirtdPid } from "./libvirt.ts";
import { ovsPids } from "./ovs.ts";
import { labController } from "./playground.ts";
import { namespaceExists, pidInNetns } from "./procs.ts";
import { INET_NAMES, readLease } from "./services.ts";
import { readLabState, STATE_FILE } from "./state.ts";
import { lagsOf } from "./switch.ts";
import { validateOptions } from "./paths.ts";
import type { Topology } from "./topology.ts";
import type { LabGateway, LabOptions, LabStatus, LabVm } from "./types.ts";
import { namespaceVms } from "./vms.ts";

/** Live state of the lab described by runDir/lab.json: namespaces, daemons, VM links and domains. */
export async function labStatus(o: LabOptions): Promise<LabStatus> {
  validateOptions(o);
  const state = readLabState(o.runDir);
  const base = { prefix: o.prefix, runDir: o.runDir };
  if (!state) return { up: false, ...base, hosts: [], vms: [], problems: [`no ${STATE_FILE} in ${o.runDir}`] };
  const t = state.topology;
  const x = new LabExec(10_000);
  const problems: string[] = [];
  for (const n of t.namespaces) if (!namespaceExists(n)) problems.push(`namespace ${n} missing`);
  const ovsUp = new Map<string, boolean>();
  for (const [ns, paths] of [[t.switchNs, t.switchOvs], ...t.hosts.map((h) => [h.namespace, h.ovs] as const)] as const) {
    const p = ovsPids(paths);
    if (p.ovsdb === undefined) problems.push(`ovsdb-server of ${ns} not running`);
    if (p.vswitchd === undefined) problems.push(`ovs-vswitchd of ${ns} not running`);
    else if (!pidInNetns(p.vswitchd, ns)) problems.push(`ovs-vswitchd of ${ns} runs outside that namespace`);
    ovsUp.set(ns, p.ovsdb !== undefined && p.vswitchd !== undefined);
  }
  const lvUp = new Map<string, boolean>();
  for (const h of t.hosts) {
    if (!h.libvirt) continue;
    const pid = libvirtdPid(h.libvirt);
    const alive = pid !== undefined;
    if (!alive) problems.push(`libvirtd of ${h.namespace} not running`);
    else if (!pidInNetns(pid, h.namespace)) problems.push(`libvirtd of ${h.namespace} runs outside that namespace`);
    lvUp.set(h.name, alive);
  }
  for (const h of t.hosts) {
    if (agentDaemonPid(o, h) === undefined) problems.push(`agent daemon of ${h.name} not running`);
  }
  const strangerNames = new Set((t.strangers ?? []).map((s) => s.name));
  const vms: LabVm[] = await Promise.all(
    namespaceVms(t).map(async (v): Promise<LabVm> => {
      const kind = strangerNames.has(v.name) ? "stranger" : "namespace";
      const out: LabVm = { name: v.name, host: v.host, network: v.network, namespace: v.namespace, interface: v.interface, hostPort: v.hostPort, mac: v.mac, kind };
      if (!namespaceExists(v.namespace)) return out;
      const r = await x.probe(["ip", "-n", v.namespace, "-json", "address", "show", "dev", v.interface]);
      if (r.exitCode !== 0) {
        problems.push(`VM ${v.name}: no ${v.interface}`);
        return out;
      }
      const info = (JSON.parse(r.stdout || "[]") as { operstate?: string; address?: string; addr_info?: { family: string; local: string }[] }[])[0];
      const ip = info?.addr_info?.find((a) => a.family === "inet")?.local;
      if (ip) out.ip = ip;
      const lease = readLease(v);
      if (lease) out.lease = { ip: lease.ip, router: lease.router, dns: lease.dns, domain: lease.domain, server: lease.serverid, seconds: Number(lease.lease) };
      if (!lease) problems.push(`VM ${v.name}: no DHCP lease`);
      else if (lease.ip !== ip) problems.push(`VM ${v.name}: leased ${lease.ip} but holds ${ip ?? "no address"}`);
      out.state = info?.operstate?.toLowerCase() ?? "unknown";
      if (out.state !== "up") problems.push(`VM ${v.name}: ${v.interface} is ${out.state}`);
      if (ovsUp.get(v.hostNs)) {
        const host = t.hosts.find((h) => h.name === v.host)!;
        const br = await x.probe(vsctl(host.ovs.db, "port-to-br", v.hostPort));
        if (br.stdout.trim() !== v.bridge) problems.push(`VM ${v.name}: port ${v.hostPort} not on ${v.bridge}`);
      }
      return out;
    }),
  );
  const domains: LabVm[] = await Promise.all(
    t.domains.map(async (d): Promise<LabVm> => {
      const h = t.hosts.find((x) => x.name === d.host)!;
      const out: LabVm = { name: d.name, host: d.host, network: d.network, namespace: d.hostNs, interface: "eth0", hostPort: "", mac: d.mac, kind: "domain" };
      if (!lvUp.get(d.host)) return out;
      const s = await domainState(x, h.libvirt!.uri, d.name);
      out.hostPort = s.hostPort;
      if (s.state === undefined) problems.push(`domain ${d.name} not defined`);
      else out.state = s.state;
      return out;
    }),
  );
  const inet = { namespace: t.inet.namespace, backendAddress: t.inet.hostAddress, web: t.inet.web, resolver: t.inet.resolver, names: Object.fromEntries(INET_NAMES) };
  const gateways = await gatewaysOf(x, t, problems);
  const lags = ovsUp.get(t.switchNs) ? await lagsOf(x, t, problems) : [];
  const status: LabStatus = {
    up: problems.length === 0,
    ...base,
    hosts: t.hosts.map(labHost),
    vms: [...vms, ...domains],
    inet,
    gateways,
    ...(lags.length > 0 ? { lags } : {}),
    controller: labController(t, o),
    inventoryDir: state.rolledOut?.dir ?? state.inventoryDir,
  };
  if (problems.length > 0) status.problems = problems;
  return status;
}

/**
 * Each network's gateway as the backend holds it: the interface that carries
 * the gateway address in the backend's namespace and its MAC (one
 * `ip -json address show` there). A network whose gateway address is on no
 * interface is a problem of the lab.
 */
async function gatewaysOf(x: LabExec, t: Topology, problems: string[]): Promise<LabGateway[]> {
  const backend = t.hosts.find((h) => h.role === "backend");
  if (!backend || !namespaceExists(backend.namespace) || !t.networks) return [];
  const r = await x.probe(["ip", "-n", backend.namespace, "-json", "address", "show"]);
  if (r.exitCode !== 0) return [];
  const links = JSON.parse(r.stdout || "[]") as { ifname: string; address?: string; addr_info?: { family: string; local: string }[] }[];
  const out: LabGateway[] = [];
  for (const n of t.networks) {
    const link = links.find((l) => l.addr_info?.some((a) => a.family === "inet" && a.local === n.gateway));
    if (!link?.address) {
      problems.push(`gateway ${n.gateway} of ${n.name} is on no interface of ${backend.namespace}`);
      continue;
    }
    out.push({ network: n.name, vlan: n.vlan, ip: n.gateway, mac: link.address.toLowerCase(), namespace: backend.namespace, interface: link.ifname });
  }
  return out;
}
