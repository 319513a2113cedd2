import PQueue from "p-queue";
import { ExecaRunner, type Runner } from "@netfleet/agent";
import { cidrContains, intToIpv4, ipv4ToInt, parseIpv4Cidr, type Inventory, type Ipv4Cidr, type Network } from "@netfleet/shared";
import { LABNET } from "../lab/services.ts";
import type { LabStatus, LabVm } from "../lab/types.ts";

/**
 * What a probe saw: traffic got through or not; a lease or none; a name
 * resolved to the expected address, or refused; traffic arrived from the
 * backend's address (masqueraded) or from the VM's own.
 */
export type Outcome = "reach" | "blocked" | "lease" | "no-lease" | "resolve" | "refused" | "masqueraded" | "unmasqueraded";

/** One row of the connectivity report. */
export interface CheckRow {
  check: string;
  from: string;
  to: string;
  expect: Outcome;
  got: Outcome | "error";
  ok: boolean;
  detail?: string;
}

interface Answer {
  got: Outcome;
  detail?: string;
}

export interface Probe {
  check: string;
  from: string;
  to: string;
  expect: Outcome;
  /** Probes that change a VM (spoofing, routes) run alone, after the others. */
  exclusive?: boolean;
  run: (runner: Runner) => Promise<Answer>;
}

const inNs = (namespace: string, ...argv: string[]) => ["ip", "netns", "exec", namespace, ...argv];

/** Two echo requests, one second for a reply: any reply is "reach". */
async function ping(runner: Runner, vm: LabVm, target: string, source?: string): Promise<Answer> {
  const argv = inNs(vm.namespace, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", ...(source ? ["-I", source] : []), target);
  const r = await runner.run({ argv, mutating: false }, { allowFailure: true });
  return { got: r.exitCode === 0 ? "reach" : "blocked" };
}

/** A TCP connection with labnet: the greeting names the server and the address it saw. */
async function tcp(runner: Runner, namespace: string, ip: string, port: number): Promise<{ reached: boolean; server?: string; peer?: string }> {
  const r = await runner.run({ argv: inNs(namespace, process.execPath, LABNET, "connect", ip, String(port), "2000"), mutating: false }, { allowFailure: true });
  if (r.exitCode !== 0) return { reached: false };
  const [server, peer] = r.stdout.trim().split(" ");
  return { reached: true, ...(server ? { server } : {}), ...(peer ? { peer } : {}) };
}

/** Asks `server` for the A record of `name`: "resolve" when `expected` is among the answers. */
async function resolve(runner: Runner, vm: LabVm, server: string, name: string, expected: string): Promise<Answer> {
  const argv = inNs(vm.namespace, "dig", "+time=1", "+tries=2", "+noall", "+comments", "+answer", `@${server}`, name, "A");
  const r = await runner.run({ argv, mutating: false }, { allowFailure: true });
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? (r.exitCode === 9 ? "TIMEOUT" : `exit ${r.exitCode}`);
  const answers = [...r.stdout.matchAll(/\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!);
  if (answers.includes(expected)) return { got: "resolve", detail: answers.join(",") };
  return { got: "refused", detail: answers.length > 0 ? `${status}: ${answers.join(",")}` : status };
}

function vmSpec(inventory: Inventory, vm: LabVm) {
  return inventory.networks.find((n) => n.name === vm.network)?.vms.find((v) => v.name === vm.name);
}

/** Whether the inventory lets `vm` open TCP `port` on `address` (by address, or by a name that resolves to it). */
function allowed(net: Network, vmName: string, address: string, port: number, names: Record<string, string>): boolean {
  if (net.egress === "open") return true;
  const vm = net.vms.find((v) => v.name === vmName);
  if (!vm?.ip) return false;
  return vm.allow.some((a) => {
    if (a.proto !== "tcp" || (a.ports && !a.ports.includes(port))) return false;
    if (a.to) {
      const cidr = parseIpv4Cidr(a.to.includes("/") ? a.to : `${a.to}/32`);
      return typeof cidr !== "string" && cidrContains(cidr, ipv4ToInt(address));
    }
    return a.name !== undefined && names[a.name] === address;
  });
}

/**
 * The connectivity matrix of a lab. Layer 2 (issue: host agent): every VM
 * reaches its gateway; VMs of a network reach each other across hosts
 * unless one is isolated; VLANs never meet; spoofed MACs and addresses are
 * dropped. Gateway role: leases from the backend, names, DNS policy, egress
 * by allow list and masqueraded, networks never routed to each other, a VM
 * reaches only its own gateway, port-forwards from the internet.
 */
export function connectivityProbes(inventory: Inventory, status: LabStatus): Probe[] {
  const probes: Probe[] = [];
  const all = status.vms.filter((v) => v.kind === "namespace");
  const vms = all.filter((v) => v.ip);
  const network = (name: string) => inventory.networks.find((n) => n.name === name)!;
  const isolated = (vm: LabVm) => vmSpec(inventory, vm)?.isolated ?? network(vm.network).isolated_ports;
  const domain = inventory.site.domain;

  // --- DHCP: every VM holds a lease from its network's gateway
  for (const vm of all) {
    const net = network(vm.network);
    const spec = vmSpec(inventory, vm);
    probes.push({
      check: "dhcp lease",
      from: vm.name,
      to: `gw-${vm.network}`,
      expect: "lease",
      run: async () => {
        const l = vm.lease;
        if (!l) return { got: "no-lease", detail: "no lease recorded" };
        const problems: string[] = [];
        if (spec?.ip && l.ip !== spec.ip) problems.push(`got ${l.ip}, static lease is ${spec.ip}`);
        if (!spec?.ip && !(ipv4ToInt(l.ip) >= ipv4ToInt(net.dhcp.start) && ipv4ToInt(l.ip) <= ipv4ToInt(net.dhcp.end))) problems.push(`${l.ip} outside the range`);
        if (l.router !== net.gateway) problems.push(`router ${l.router}`);
        if (l.dns !== net.gateway) problems.push(`dns ${l.dns}`);
        if (l.server !== net.gateway) problems.push(`served by ${l.server}`);
        if (vm.ip !== l.ip) problems.push(`interface holds ${vm.ip ?? "nothing"}`);
        return problems.length ? { got: "no-lease", detail: problems.join("; ") } : { got: "lease", detail: `${l.ip} for ${l.seconds} s` };
      },
    });
  }

  // --- layer 2 and the gateway
  for (const vm of vms) {
    const gw = network(vm.network).gateway;
    probes.push({ check: "gateway", from: vm.name, to: `gw-${vm.network}`, expect: "reach", run: (r) => ping(r, vm, gw) });
  }
  for (let i = 0; i < vms.length; i++) {
    for (let j = i + 1; j < vms.length; j++) {
      const a = vms[i]!;
      const b = vms[j]!;
      if (a.network !== b.network) continue;
      const expect: Outcome = isolated(a) || isolated(b) ? "blocked" : "reach";
      const where = a.host === b.host ? "same host" : "across hosts";
      probes.push({ check: `same-network (${where})`, from: a.name, to: b.name, expect, run: (r) => ping(r, a, b.ip!) });
      if (expect === "blocked") probes.push({ check: `same-network (${where})`, from: b.name, to: a.name, expect, run: (r) => ping(r, b, a.ip!) });
    }
  }
  // Layer 2 only: an on-link route makes the VM ARP for the other network's
  // VM directly, so nothing but the VLANs stands between them.
  const seen = new Set<string>();
  for (const a of vms) {
    const b = vms.find((x) => x.network !== a.network && !seen.has(`${a.network}>${x.network}`));
    if (!b) continue;
    seen.add(`${a.network}>${b.network}`);
    probes.push({
      check: "vlan-isolation (L2)",
      from: a.name,
      to: b.name,
      expect: "blocked",
      exclusive: true,
      run: async (r) => {
        await r.run({ argv: inNs(a.namespace, "ip", "route", "replace", `${b.ip}/32`, "dev", a.interface), mutating: true });
        try {
          return await ping(r, a, b.ip!);
        } finally {
          await r.run({ argv: inNs(a.namespace, "ip", "route", "del", `${b.ip}/32`, "dev", a.interface), mutating: true }, { allowFailure: true });
        }
      },
    });
  }
  // Layer 3 through the backend: networks are never routed to each other, and a VM
  // reaches no gateway but its own.
  const routed = new Set<string>();
  for (const a of vms) {
    for (const b of vms) {
      if (a.network === b.network || routed.has(`${a.network}>${b.network}`)) continue;
      routed.add(`${a.network}>${b.network}`);
      probes.push({ check: "networks apart (routed)", from: a.name, to: b.name, expect: "blocked", run: (r) => ping(r, a, b.ip!) });
      probes.push({ check: "only its own gateway", from: a.name, to: `gw-${b.network}`, expect: "blocked", run: (r) => ping(r, a, network(b.network).gateway) });
    }
  }

  const spoofer = vms.find((v) => !isolated(v) && vmSpec(inventory, v)?.ip);
  if (spoofer) {
    const net = network(spoofer.network);
    const gw = net.gateway;
    const fake = unusedAddress(net.cidr, [gw, ...status.vms.map((v) => v.ip ?? "")]);
    probes.push({
      check: "anti-spoofing (source IP)",
      from: spoofer.name,
      to: `gw-${spoofer.network}`,
      expect: "blocked",
      exclusive: true,
      run: async (r) => {
        await r.run({ argv: inNs(spoofer.namespace, "ip", "addr", "add", `${fake}/32`, "dev", spoofer.interface), mutating: true });
        try {
          return { ...(await ping(r, spoofer, gw, fake)), detail: `from ${fake}` };
        } finally {
          await r.run({ argv: inNs(spoofer.namespace, "ip", "addr", "del", `${fake}/32`, "dev", spoofer.interface), mutating: true }, { allowFailure: true });
        }
      },
    });
    probes.push({
      check: "anti-spoofing (source MAC)",
      from: spoofer.name,
      to: `gw-${spoofer.network}`,
      expect: "blocked",
      exclusive: true,
      run: async (r) => {
        const setMac = (mac: string) => r.run({ argv: inNs(spoofer.namespace, "ip", "link", "set", "dev", spoofer.interface, "address", mac), mutating: true });
        await setMac("52:54:00:de:ad:01");
        await r.run({ argv: inNs(spoofer.namespace, "ip", "neigh", "flush", "dev", spoofer.interface), mutating: true });
        try {
          return { ...(await ping(r, spoofer, gw)), detail: "from 52:54:00:de:ad:01" };
        } finally {
          await setMac(spoofer.mac);
        }
      },
    });
  }

  const inet = status.inet;
  if (!inet) return probes;

  // --- DNS: VM names across hosts, and the network's DNS policy
  const named = new Set<string>();
  for (const a of vms) {
    const b = vms.find((x) => x.network === a.network && x.host !== a.host && x.ip && !named.has(`${a.name}>${x.name}`));
    if (!b || !a.lease) continue;
    named.add(`${a.name}>${b.name}`);
    // the name as the VM would ask it: under the search domain its lease gave it
    const fqdn = `${b.name}.${a.lease.domain || `${a.network}.${domain}`}`;
    probes.push({ check: "dns (vm names)", from: a.name, to: fqdn, expect: "resolve", run: (r) => resolve(r, a, a.lease!.dns, fqdn, b.ip!) });
  }
  for (const net of inventory.networks) {
    const vm = vms.find((v) => v.network === net.name && v.lease);
    if (!vm) continue;
    const allowNames = new Set([...net.dns_names, ...net.vms.flatMap((v) => v.allow.flatMap((a) => (a.name ? [a.name] : [])))]);
    for (const [name, address] of Object.entries(inet.names)) {
      const expect: Outcome = net.dns === "open" || allowNames.has(name) ? "resolve" : "refused";
      probes.push({ check: `dns policy (${net.dns})`, from: vm.name, to: name, expect, run: (r) => resolve(r, vm, vm.lease!.dns, name, address) });
    }
  }

  // --- egress: allow lists, masquerading; names resolve first so dnsmasq fills the nft sets
  for (const vm of vms) {
    const net = network(vm.network);
    const spec = vmSpec(inventory, vm);
    for (const address of inet.web) {
      const expect: Outcome = allowed(net, vm.name, address, 80, inet.names) ? "masqueraded" : "blocked";
      const viaName = spec?.allow.find((a) => a.name && inet.names[a.name] === address)?.name;
      probes.push({
        check: `egress (${net.egress})`,
        from: vm.name,
        to: `${viaName ?? address}:80`,
        expect,
        run: async (r) => {
          if (viaName && vm.lease) await resolve(r, vm, vm.lease.dns, viaName, address);
          const c = await tcp(r, vm.namespace, address, 80);
          if (!c.reached) return { got: "blocked" };
          return c.peer === inet.backendAddress ? { got: "masqueraded", detail: `arrived from ${c.peer}` } : { got: "unmasqueraded", detail: `arrived from ${c.peer}` };
        },
      });
    }
  }

  // --- port-forwards: from the internet to the backend's address, answered by the VM's service
  for (const net of inventory.networks) {
    for (const pf of net.port_forwards.filter((p) => p.proto === "tcp")) {
      probes.push({
        check: "port-forward",
        from: "internet",
        to: `${inet.backendAddress}:${pf.listen} -> ${pf.vm}:${pf.port}`,
        expect: "reach",
        run: async (r) => {
          const c = await tcp(r, inet.namespace, inet.backendAddress, pf.listen);
          if (!c.reached) return { got: "blocked" };
          return c.server === pf.vm ? { got: "reach", detail: `${c.server} saw ${c.peer}` } : { got: "blocked", detail: `answered by ${c.server}` };
        },
      });
    }
  }
  return probes;
}

function unusedAddress(cidrText: string, taken: string[]): string {
  const cidr = parseIpv4Cidr(cidrText) as Ipv4Cidr;
  const used = new Set(taken.filter(Boolean).map(ipv4ToInt));
  for (let n = cidr.last - 2; n > cidr.first; n--) if (!used.has(n)) return intToIpv4(n);
  throw new Error(`no free address in ${cidrText}`);
}

export async function runProbes(probes: Probe[], runner: Runner = new ExecaRunner({ timeoutMs: 15_000 })): Promise<CheckRow[]> {
  const queue = new PQueue({ concurrency: 6 });
  const row = async (p: Probe): Promise<CheckRow> => {
    try {
      const a = await p.run(runner);
      return { check: p.check, from: p.from, to: p.to, expect: p.expect, got: a.got, ok: a.got === p.expect, ...(a.detail ? { detail: a.detail } : {}) };
    } catch (err) {
      return { check: p.check, from: p.from, to: p.to, expect: p.expect, got: "error", ok: false, detail: (err as Error).message };
    }
  };
  const shared = await Promise.all(probes.filter((p) => !p.exclusive).map((p) => queue.add(() => row(p))));
  const exclusive: CheckRow[] = [];
  for (const p of probes.filter((x) => x.exclusive)) exclusive.push(await row(p));
  return [...(shared as CheckRow[]), ...exclusive];
}
