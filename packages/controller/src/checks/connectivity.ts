import PQueue from "p-queue";
import { ExecaRunner, type Runner } from "@netfleet/agent";
import { intToIpv4, ipv4ToInt, parseIpv4Cidr, type Inventory, type Ipv4Cidr } from "@netfleet/shared";
import type { LabStatus, LabVm } from "../lab/types.ts";

export type Outcome = "reach" | "blocked";

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

interface Probe {
  check: string;
  from: LabVm;
  to: string;
  target: string;
  expect: Outcome;
  /** Probes that change the VM (spoofing) run alone, after the others. */
  exclusive?: boolean;
  run: (runner: Runner) => Promise<Outcome>;
}

const ns = (vm: LabVm, ...argv: string[]) => ["ip", "netns", "exec", vm.namespace, ...argv];

/** Two echo requests, one second for a reply: any reply is "reach". */
async function ping(runner: Runner, vm: LabVm, target: string, source?: string): Promise<Outcome> {
  const argv = ns(vm, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", ...(source ? ["-I", source] : []), target);
  const r = await runner.run({ argv, mutating: false }, { allowFailure: true });
  return r.exitCode === 0 ? "reach" : "blocked";
}

/**
 * The connectivity matrix of a lab: every VM reaches its gateway; VMs of a
 * network reach each other across hosts unless one is isolated; VLANs never
 * meet at layer 2; spoofed MACs and addresses are dropped.
 */
export function connectivityProbes(inventory: Inventory, status: LabStatus): Probe[] {
  const probes: Probe[] = [];
  const vms = status.vms.filter((v) => v.kind === "namespace" && v.ip);
  const network = (name: string) => inventory.networks.find((n) => n.name === name)!;
  const isolated = (vm: LabVm) => network(vm.network).vms.find((v) => v.name === vm.name)?.isolated ?? network(vm.network).isolated_ports;

  for (const vm of vms) {
    const gw = network(vm.network).gateway;
    probes.push({ check: "gateway", from: vm, to: `gw-${vm.network}`, target: gw, expect: "reach", run: (r) => ping(r, vm, gw) });
  }
  for (let i = 0; i < vms.length; i++) {
    for (let j = i + 1; j < vms.length; j++) {
      const a = vms[i]!;
      const b = vms[j]!;
      if (a.network !== b.network) continue;
      const expect: Outcome = isolated(a) || isolated(b) ? "blocked" : "reach";
      const where = a.host === b.host ? "same host" : "across hosts";
      probes.push({ check: `same-network (${where})`, from: a, to: b.name, target: b.ip!, expect, run: (r) => ping(r, a, b.ip!) });
      if (expect === "blocked") probes.push({ check: `same-network (${where})`, from: b, to: a.name, target: a.ip!, expect, run: (r) => ping(r, b, a.ip!) });
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
      from: a,
      to: b.name,
      target: b.ip!,
      expect: "blocked",
      exclusive: true,
      run: async (r) => {
        await r.run({ argv: ns(a, "ip", "route", "replace", `${b.ip}/32`, "dev", a.interface), mutating: true });
        try {
          return await ping(r, a, b.ip!);
        } finally {
          await r.run({ argv: ns(a, "ip", "route", "del", `${b.ip}/32`, "dev", a.interface), mutating: true }, { allowFailure: true });
        }
      },
    });
  }
  const spoofer = vms.find((v) => !isolated(v) && inventory.networks.some((n) => n.vms.some((x) => x.name === v.name && x.ip)));
  if (spoofer) {
    const net = network(spoofer.network);
    const gw = net.gateway;
    const fake = unusedAddress(net.cidr, [gw, ...status.vms.map((v) => v.ip ?? "")]);
    probes.push({
      check: "anti-spoofing (source IP)",
      from: spoofer,
      to: `gw-${spoofer.network}`,
      target: `${gw} from ${fake}`,
      expect: "blocked",
      exclusive: true,
      run: async (r) => {
        await r.run({ argv: ns(spoofer, "ip", "addr", "add", `${fake}/32`, "dev", spoofer.interface), mutating: true });
        try {
          return await ping(r, spoofer, gw, fake);
        } finally {
          await r.run({ argv: ns(spoofer, "ip", "addr", "del", `${fake}/32`, "dev", spoofer.interface), mutating: true }, { allowFailure: true });
        }
      },
    });
    probes.push({
      check: "anti-spoofing (source MAC)",
      from: spoofer,
      to: `gw-${spoofer.network}`,
      target: `${gw} from 52:54:00:de:ad:01`,
      expect: "blocked",
      exclusive: true,
      run: async (r) => {
        const setMac = (mac: string) => r.run({ argv: ns(spoofer, "ip", "link", "set", "dev", spoofer.interface, "address", mac), mutating: true });
        await setMac("52:54:00:de:ad:01");
        await r.run({ argv: ns(spoofer, "ip", "neigh", "flush", "dev", spoofer.interface), mutating: true });
        try {
          return await ping(r, spoofer, gw);
        } finally {
          await setMac(spoofer.mac);
        }
      },
    });
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
      const got = await p.run(runner);
      return { check: p.check, from: p.from.name, to: p.to, expect: p.expect, got, ok: got === p.expect };
    } catch (err) {
      return { check: p.check, from: p.from.name, to: p.to, expect: p.expect, got: "error", ok: false, detail: (err as Error).message };
    }
  };
  const shared = await Promise.all(probes.filter((p) => !p.exclusive).map((p) => queue.add(() => row(p))));
  const exclusive: CheckRow[] = [];
  for (const p of probes.filter((x) => x.exclusive)) exclusive.push(await row(p));
  return [...(shared as CheckRow[]), ...exclusive];
}
