import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { netnsExec, waitFor, type LabExec } from "./exec.ts";
import { isAlive, pidInNetns, readPidfile, terminate } from "./procs.ts";
import type { Topology, TopoVm } from "./topology.ts";

/**
 * The long-running processes of the lab besides OVS and libvirtd: the
 * "internet" (an upstream resolver and two web servers), the VMs' TCP
 * services, and one agent daemon per host. Each is started detached inside
 * its namespace, with a pidfile and a log under the run dir; a running one
 * is kept, so a second `lab up` restarts nothing.
 */

export const LABNET = join(dirname(fileURLToPath(import.meta.url)), "labnet.ts");

/** Names the lab's upstream resolver answers (the "internet" of the lab). */
export const INET_NAMES = new Map([
  ["mirror.inet.test", "198.51.100.20"],
  ["www.inet.test", "198.51.100.10"],
]);

/** Lease as recorded by the VM's DHCP client hook. */
export interface Lease {
  ip: string;
  mask: string;
  router: string;
  dns: string;
  domain: string;
  lease: string;
  serverid: string;
}

/** Starts argv detached (its own session), stdout and stderr into `log`, and records its pid. */
export function startDetached(argv: string[], pidfile: string, log: string): number {
  mkdirSync(dirname(pidfile), { recursive: true });
  const fd = openSync(log, "a");
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", fd, fd] });
    if (child.pid === undefined) throw new Error(`could not start ${argv[0]}`);
    child.unref();
    writeFileSync(pidfile, `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/**
 * The pid from `pidfile` when that process runs inside namespace `ns` and is
 * what we started: `program` is its comm, or for a Node program (whose main
 * thread Node renames) a word of its command line such as the script path.
 */
export function runningIn(pidfile: string, program: string, ns: string): number | undefined {
  const pid = readPidfile(pidfile);
  if (!isAlive(pid) || !pidInNetns(pid, ns)) return undefined;
  if (program.includes("/")) return cmdline(pid!).includes(program) ? pid : undefined;
  return isAlive(pid, program) ? pid : undefined;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/** The internet namespace: dnsmasq as the site's upstream resolver, labnet web servers. */
export async function ensureInet(x: LabExec, t: Topology, upstreamNames: Map<string, string>): Promise<Record<string, number>> {
  const dir = t.inet.dir;
  const ns = t.inet.namespace;
  mkdirSync(dir, { recursive: true });
  const pids: Record<string, number> = {};
  const dnsPid = join(dir, "dnsmasq.pid");
  let dns = runningIn(dnsPid, "dnsmasq", ns);
  if (dns === undefined) {
    const args = [
      "dnsmasq",
      "--keep-in-foreground",
      "--no-resolv",
      "--no-hosts",
      "--bind-interfaces",
      `--listen-address=${t.inet.resolver}`,
      "--user=root",
      "--log-facility=-",
      "--log-queries",
    ];
    for (const [name, addr] of [...upstreamNames].sort()) args.push(`--address=/${name}/${addr}`);
    dns = startDetached(netnsExec(ns, args), dnsPid, join(dir, "dnsmasq.log"));
  }
  pids[`dnsmasq@${ns}`] = dns;
  const webPid = join(dir, "web.pid");
  let web = runningIn(webPid, LABNET, ns);
  if (web === undefined) {
    web = startDetached(netnsExec(ns, [process.execPath, LABNET, "serve", "inet", t.inet.web.map((a) => `${a}:80`).join(",")]), webPid, join(dir, "web.log"));
  }
  pids[`web@${ns}`] = web;
  await waitFor(`the lab internet's resolver and web servers`, 10_000, async () => {
    const r = await x.probe(["ss", "-N", ns, "-Hltun"]);
    return t.inet.web.every((a) => r.stdout.includes(`${a}:80`)) && r.stdout.includes(`${t.inet.resolver}:53`);
  });
  return pids;
}

/**
 * TCP services inside VMs (the targets of port-forwards): one labnet server
 * per VM that has any, listening on exactly its `services`. A running one
 * whose endpoints (the last word of its command line) differ, e.g. after
 * `netfleet-lab rollout` of a site with another port-forward, is stopped
 * and started anew; one of a VM that has none left is stopped. Returns the
 * pids of those that run, by `service@<namespace>`.
 */
export async function ensureVmServices(x: LabExec, t: Topology): Promise<Record<string, number>> {
  const pids: Record<string, number> = {};
  for (const v of t.vms) {
    const pidfile = join(t.runDir, "vms", `${v.name}.service.pid`);
    const endpoints = v.services.join(",");
    let pid = runningIn(pidfile, LABNET, v.namespace);
    if (pid !== undefined && cmdline(pid).filter(Boolean).at(-1) !== endpoints) {
      if ((await terminate([pid])).length > 0) throw new Error(`the service of VM ${v.name} (pid ${pid}) survived SIGKILL`);
      pid = undefined;
    }
    if (v.services.length === 0) continue;
    pid ??= startDetached(netnsExec(v.namespace, [process.execPath, LABNET, "serve", v.name, endpoints]), pidfile, join(t.runDir, "vms", `${v.name}.service.log`));
    pids[`service@${v.namespace}`] = pid;
  }
  await waitFor("the VMs' TCP services", 10_000, async () => {
    for (const v of t.vms.filter((vm) => vm.services.length > 0)) {
      const r = await x.probe(["ss", "-N", v.namespace, "-Hltn"]);
      if (!v.services.every((s) => r.stdout.includes(s))) return false;
    }
    return true;
  });
  return pids;
}

/** udhcpc's event hook: configures the lease on the VM's interface and records it as JSON. */
const UDHCPC_HOOK = `#!/bin/sh
# netfleet lab: udhcpc event hook for a namespace VM (written by netfleet-lab up)
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then ip route replace default via "\${router%% *}" dev "$interface"; fi
    printf '{"ip":"%s","mask":"%s","router":"%s","dns":"%s","domain":"%s","lease":"%s","serverid":"%s"}\\n' \\
      "$ip" "$mask" "$router" "$dns" "$domain" "$lease" "$serverid" > "$NETFLEET_LEASE_FILE"
    ;;
esac
exit 0
`;

/** The lease a VM's DHCP client recorded in its lease file; undefined while there is none (or it cannot be read). */
export function readLease(v: TopoVm): Lease | undefined {
  try {
    return JSON.parse(readFileSync(v.leaseFile, "utf8")) as Lease;
  } catch {
    return undefined;
  }
}

/**
 * Asks the backend's dnsmasq for a lease, the way a VM boots: busybox
 * udhcpc in the VM's namespace, a few bounded tries, quitting once bound;
 * a client that got nothing starts over once (a booting guest's client
 * keeps trying too).
 */
export async function dhcp(x: LabExec, t: Topology, v: TopoVm): Promise<Lease> {
  const hook = join(t.runDir, "vms", "udhcpc-hook.sh");
  mkdirSync(dirname(hook), { recursive: true });
  if (!existsSync(hook) || readFileSync(hook, "utf8") !== UDHCPC_HOOK) {
    writeFileSync(hook, UDHCPC_HOOK);
    chmodSync(hook, 0o755);
  }
  const argv = netnsExec(v.namespace, [
    "env",
    `NETFLEET_LEASE_FILE=${v.leaseFile}`,
    "busybox",
    "udhcpc",
    "-i",
    v.interface,
    "-f",
    "-q",
    "-n",
    "-t",
    "8",
    "-T",
    "1",
    "-A",
    "1",
    "-s",
    hook,
    "-x",
    `hostname:${v.name}`,
  ]);
  let r = await x.probe(argv);
  if (r.exitCode !== 0) r = await x.probe(argv);
  const lease = readLease(v);
  if (r.exitCode !== 0 || !lease) throw new Error(`VM ${v.name}: no DHCP lease from the backend (udhcpc exit ${r.exitCode}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return lease;
}
