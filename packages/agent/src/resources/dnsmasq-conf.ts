import { join } from "node:path";
import type { DnsmasqSpec } from "@netfleet/shared";
import { allowedNameLines } from "./dnsmasq-names.ts";

/**
 * Where one network's dnsmasq keeps its files. Config, hosts, pid and log
 * live in the run dir (`<runDir>/dnsmasq`, a tmpfs: rewritten at every
 * start); the lease file lives in the state dir (`<stateDir>/dnsmasq`), so
 * the leases survive a reboot of the backend (a VM keeps its address, no
 * DHCPNAK). `legacyLeases` is where lease files lived before (run dir):
 * moved once to `leases`.
 */
export interface DnsmasqFiles {
  dir: string;
  conf: string;
  hosts: string;
  pid: string;
  log: string;
  /** `<stateDir>/dnsmasq`. */
  stateDir: string;
  leases: string;
  legacyLeases: string;
}

/**
 * The files of `network`'s dnsmasq. `stateDir` defaults to `<runDir>/state`,
 * as `Toolbox.stateDir` does when only a run dir is given.
 */
export function dnsmasqFiles(runDir: string, network: string, stateDir: string = join(runDir, "state")): DnsmasqFiles {
  const dir = join(runDir, "dnsmasq");
  const state = join(stateDir, "dnsmasq");
  return {
    dir,
    conf: join(dir, `${network}.conf`),
    hosts: join(dir, `${network}.hosts`),
    pid: join(dir, `${network}.pid`),
    log: join(dir, `${network}.log`),
    stateDir: state,
    leases: join(state, `${network}.leases`),
    legacyLeases: join(dir, `${network}.leases`),
  };
}

/** The unprivileged account dnsmasq drops to (dnsmasq(8) --user, --group). */
export interface DnsmasqUser {
  user: string;
  group: string;
}

/** Accounts tried in order: Debian's `dnsmasq` service user, then `nobody` (dnsmasq's compiled-in default). */
export const DNSMASQ_USERS = ["dnsmasq", "nobody"] as const;

/**
 * The account dnsmasq runs as, from the text of /etc/passwd and /etc/group:
 * the first of DNSMASQ_USERS that exists, with its primary group's name
 * (Debian: dnsmasq, gid 65534 `nogroup`). Neither present: root (dnsmasq
 * then keeps every privilege; the plan says so).
 */
export function dnsmasqUser(passwd: string | undefined, group: string | undefined): DnsmasqUser {
  const rows = (text: string | undefined) => (text ?? "").split("\n").map((l) => l.split(":"));
  for (const name of DNSMASQ_USERS) {
    const pw = rows(passwd).find((r) => r[0] === name && r.length >= 7);
    if (!pw) continue;
    const gid = pw[3];
    const gr = rows(group).find((r) => r[2] === gid && r[0]);
    if (gr && /^[a-z_][a-z0-9_-]*$/.test(gr[0]!)) return { user: name, group: gr[0]! };
  }
  return { user: "root", group: "root" };
}

/** Each network's log is renamed to `.1` past this size (bytes); dnsmasq reopens it on SIGUSR2. */
export const DNSMASQ_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Rotated logs kept per network (`.1` … `.N`). */
export const DNSMASQ_LOG_KEEP = 3;

/**
 * The main config. Everything that can change without a restart (static
 * leases and names) lives in the hosts file, which dnsmasq re-reads on
 * SIGHUP: DHCP never goes away for a lease change.
 *
 * Meaning, each line from dnsmasq(8):
 * - `bind-interfaces` with `interface=` and `listen-address=`: it listens on
 *   the gateway address of this network only (one dnsmasq per network).
 * - `user=`/`group=`: after opening its sockets, pid, lease and log files as
 *   root it drops to that account, keeping CAP_NET_ADMIN only (DHCP's ARP
 *   cache writes and nftset's netlink; /proc/<pid>/status CapEff 0x1000),
 *   and CAP_NET_BIND_SERVICE too when it started while an address of its
 *   interface was still in DAD (an IPv6 link-local one, bound later;
 *   dnsmasq.c need_cap_net_bind_service).
 * - `max-ttl`, `max-cache-ttl`: answers are cached and handed out with a TTL
 *   of at most `maxTtl` s (the name sets' timeout is set above it).
 * - `log-queries`: every query and its answer or refusal, in the log file.
 * - DHCP (only when `spec.dhcp`): `dhcp-option=option:router,<gateway>`, or
 *   `option:router` without a value, which sends no router option (RFC 2132
 *   option 3; without the line dnsmasq would offer itself); option 26
 *   (interface MTU, RFC 2132 §5.1) = `spec.mtu`; `no-ping` (no ICMP check
 *   before an offer: behind the VM ports' rules only a lease's holder can
 *   answer from its address, so the check could only time out, about 3 s
 *   each, during which nobody else is answered).
 * - Without DHCP the hosts file is an `addn-hosts` file: DNS names only.
 */
export function dnsmasqConf(spec: DnsmasqSpec, files: DnsmasqFiles, owner: string, account: DnsmasqUser): string {
  const lines = [
    `# netfleet-owner=${owner} network=${spec.name}; written by netfleet-agent, do not edit`,
    `interface=${spec.interface}`,
    "bind-interfaces",
    "except-interface=lo",
    `listen-address=${spec.address}`,
    `user=${account.user}`,
    `group=${account.group}`,
    `pid-file=${files.pid}`,
    `log-facility=${files.log}`,
    "log-queries",
    "no-hosts",
    "no-resolv",
    `domain=${spec.domain}`,
    `local=/${spec.domain}/`,
    `host-record=gw.${spec.domain},${spec.address}`,
    `max-ttl=${spec.maxTtl}`,
    `max-cache-ttl=${spec.maxTtl}`,
  ];
  if (spec.dhcp) {
    lines.push(
      `dhcp-range=${spec.dhcp.start},${spec.dhcp.end},${spec.netmask},${spec.dhcp.leaseTime}`,
      `dhcp-leasefile=${files.leases}`,
      `dhcp-hostsfile=${files.hosts}`,
      "log-dhcp",
      "dhcp-authoritative",
      "no-ping",
      spec.router ? `dhcp-option=option:router,${spec.address}` : "dhcp-option=option:router",
      `dhcp-option=option:dns-server,${spec.address}`,
      `dhcp-option=option:mtu,${spec.mtu}`,
    );
  } else {
    lines.push(`addn-hosts=${files.hosts}`);
  }
  if (spec.dns === "open") for (const u of spec.upstream) lines.push(`server=${u}`);
  // allowlist: only these names reach the upstream, anything else is refused (no DNS tunnel out).
  lines.push(...allowedNameLines(spec.allowNames, spec.upstream, spec.dns === "open"));
  return lines.join("\n") + "\n";
}

/**
 * The hosts file. With DHCP, dnsmasq's --dhcp-hostsfile lines
 * `mac,ip,name` (a static lease) or `mac,name` (a name only); without DHCP,
 * an --addn-hosts file, `ip name.domain name` for the hosts with an address.
 */
export function dnsmasqHosts(spec: DnsmasqSpec): string {
  const lines = spec.dhcp
    ? spec.hosts.map((h) => (h.ip ? `${h.mac},${h.ip},${h.name}` : `${h.mac},${h.name}`))
    : spec.hosts.flatMap((h) => (h.ip ? [`${h.ip} ${h.name}.${spec.domain} ${h.name}`] : []));
  return lines.join("\n") + (lines.length ? "\n" : "");
}
