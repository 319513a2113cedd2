import { join } from "node:path";
import type { DnsmasqSpec } from "@netfleet/shared";
import { mutate, waitExitStep, writeFileStep, type Command } from "../exec/runner.ts";
import type { Changes, PlanContext, ResourceHandler, ResourcePlan } from "./types.ts";

export interface DnsmasqFiles {
  dir: string;
  conf: string;
  hosts: string;
  pid: string;
  leases: string;
  log: string;
}

export function dnsmasqFiles(runDir: string, network: string): DnsmasqFiles {
  const dir = join(runDir, "dnsmasq");
  return {
    dir,
    conf: join(dir, `${network}.conf`),
    hosts: join(dir, `${network}.hosts`),
    pid: join(dir, `${network}.pid`),
    leases: join(dir, `${network}.leases`),
    log: join(dir, `${network}.log`),
  };
}

export interface DnsmasqObservation {
  conf?: string;
  hosts?: string;
  /** The pid of the dnsmasq running our config, if one does. */
  pid?: number;
}

/**
 * The main config. Everything that can change without a restart (static
 * leases and names) lives in the hosts file, which dnsmasq re-reads on
 * SIGHUP: DHCP never goes away for a lease change.
 */
export function dnsmasqConf(spec: DnsmasqSpec, files: DnsmasqFiles, owner: string): string {
  const lines = [
    `# netfleet-owner=${owner} network=${spec.name}; written by netfleet-agent, do not edit`,
    `interface=${spec.interface}`,
    "bind-interfaces",
    "except-interface=lo",
    `listen-address=${spec.address}`,
    // dnsmasq-base ships no service user; root keeps the lease and pid files writable.
    "user=root",
    "group=root",
    `pid-file=${files.pid}`,
    `dhcp-leasefile=${files.leases}`,
    `dhcp-hostsfile=${files.hosts}`,
    `log-facility=${files.log}`,
    "log-dhcp",
    "no-hosts",
    "no-resolv",
    `domain=${spec.domain}`,
    `local=/${spec.domain}/`,
    `host-record=gw.${spec.domain},${spec.address}`,
    ...(spec.dhcp ? [`dhcp-range=${spec.dhcp.start},${spec.dhcp.end},${spec.netmask},${spec.dhcp.leaseTime}`] : []),
    "dhcp-authoritative",
    // No ICMP check before offering an address (dnsmasq(8) --no-ping): behind the VM ports'
    // rules only the holder of a lease may answer from its address, so the check could only time
    // out, and dnsmasq waits out each one (about 3 s) before answering anyone else.
    "no-ping",
    `dhcp-option=option:router,${spec.address}`,
    `dhcp-option=option:dns-server,${spec.address}`,
  ];
  if (spec.dns === "open") {
    for (const u of spec.upstream) lines.push(`server=${u}`);
  } else {
    // Only these names reach the upstream; anything else is refused.
    for (const a of spec.allowNames) {
      for (const u of spec.upstream) lines.push(`server=/${a.name}/${u}`);
      if (a.set) lines.push(`nftset=/${a.name}/4#inet#netfleet#${a.set}`);
    }
  }
  return lines.join("\n") + "\n";
}

export function dnsmasqHosts(spec: DnsmasqSpec): string {
  return spec.hosts.map((h) => (h.ip ? `${h.mac},${h.ip},${h.name}` : `${h.mac},${h.name}`)).join("\n") + (spec.hosts.length ? "\n" : "");
}

/** "<owner> <network>" from the mark on a config's first line, if it carries one. */
export function dnsmasqOwner(conf: string | undefined): string | undefined {
  const m = /^# netfleet-owner=(\S+) network=([a-z][a-z0-9-]*);/.exec(conf ?? "");
  return m ? `${m[1]} ${m[2]}` : undefined;
}

/** Only a dnsmasq started with our config counts: a recycled pid is not ours. */
export function isOurDnsmasq(argv: string[] | undefined, conf: string): boolean {
  return argv !== undefined && argv[0] !== undefined && /(?:^|\/)dnsmasq$/.test(argv[0]) && argv.includes(`--conf-file=${conf}`);
}

function files(spec: DnsmasqSpec, ctx: PlanContext): DnsmasqFiles {
  return dnsmasqFiles(ctx.tools.runDir, spec.name);
}

export const dnsmasq: ResourceHandler<DnsmasqSpec, DnsmasqObservation> = {
  kind: "dnsmasq",
  async observe(spec, ctx) {
    const f = files(spec, ctx);
    const [conf, hosts, pidText] = await Promise.all([ctx.readFile(f.conf), ctx.readFile(f.hosts), ctx.readFile(f.pid)]);
    const obs: DnsmasqObservation = {};
    if (conf !== undefined) obs.conf = conf;
    if (hosts !== undefined) obs.hosts = hosts;
    const pid = Number(pidText?.trim());
    if (Number.isInteger(pid) && pid > 0) {
      if (isOurDnsmasq(await ctx.processArgv(pid), f.conf)) obs.pid = pid;
    }
    return obs;
  },
  plan(spec, obs, ctx): ResourcePlan {
    const f = files(spec, ctx);
    const conf = dnsmasqConf(spec, f, ctx.owner);
    const hosts = dnsmasqHosts(spec);
    const changes: Changes = {};
    const commands: Command[] = [];
    const confChanged = obs.conf !== conf;
    const hostsChanged = obs.hosts !== hosts;
    if (confChanged) {
      changes.config = { old: obs.conf === undefined ? null : "differs", new: f.conf };
      commands.push(writeFileStep(f.conf, conf));
    }
    if (hostsChanged) {
      changes.hosts = { old: obs.hosts?.trim().split("\n").filter(Boolean) ?? null, new: hosts.trim().split("\n").filter(Boolean) };
      commands.push(writeFileStep(f.hosts, hosts));
    }
    const start = mutate(["dnsmasq", `--conf-file=${f.conf}`]);
    if (obs.pid === undefined) {
      changes.running = { old: false, new: true };
      commands.push(start);
    } else if (confChanged) {
      changes.running = { old: `pid ${obs.pid} (old config)`, new: "restarted" };
      commands.push(mutate(["kill", "-TERM", String(obs.pid)]), waitExitStep(obs.pid), start);
    } else if (hostsChanged) {
      commands.push(mutate(["kill", "-HUP", String(obs.pid)]));
    }
    return { changes, commands };
  },
};
