import { basename } from "node:path";
import { changedLines, unifiedDiff, type DnsmasqSpec } from "@netfleet/shared";
import { mutate, removeFileStep, waitExitStep, writeFileStep, type Command } from "../exec/runner.ts";
import { dnsmasqConf, dnsmasqFiles, dnsmasqHosts, dnsmasqUser, type DnsmasqFiles, type DnsmasqUser } from "./dnsmasq-conf.ts";
import type { Changes, PlanContext, ResourceHandler, ResourcePlan } from "./types.ts";

export { DNSMASQ_LOG_KEEP, DNSMASQ_LOG_MAX_BYTES, dnsmasqConf, dnsmasqFiles, dnsmasqHosts, dnsmasqUser, type DnsmasqFiles, type DnsmasqUser } from "./dnsmasq-conf.ts";

/** What a dnsmasq resource sees of its network's files, process and service account. */
export interface DnsmasqObservation {
  conf?: string;
  hosts?: string;
  /** The pid of the dnsmasq running our config, if one does. */
  pid?: number;
  /** The account dnsmasq drops to (from /etc/passwd and /etc/group); absent: root. */
  account?: DnsmasqUser;
  /** Whether the lease file exists in the state dir. */
  leases?: boolean;
  /** Whether a lease file is still in the run dir, where it lived before (moved once). */
  legacyLeases?: boolean;
  /** Whether `<stateDir>/dnsmasq` exists. */
  stateDir?: boolean;
  /**
   * Only when none of ours runs (it is about to start): owner and mode of its
   * lease and log files that exist, `user:group octal` by path (stat(1)).
   */
  owned?: Record<string, string>;
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

/** `stat --format='%n %U:%G %a'` lines: path → "user:group mode". */
export function parseStat(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^(\/\S+) (\S+:\S+ [0-7]{3,4})$/gm)) out[m[1]!] = m[2]!;
  return out;
}

/** The files of `spec`'s network on this host (run dir and state dir from the Toolbox). */
export function specFiles(spec: DnsmasqSpec, ctx: PlanContext): DnsmasqFiles {
  return dnsmasqFiles(ctx.tools.runDir, spec.name, ctx.tools.stateDir);
}

/**
 * What runs before dnsmasq starts, with it stopped: the state dir exists;
 * a lease file left in the run dir moves to the state dir once (or goes,
 * when the state dir already has one); the lease and log files exist,
 * owned by the account dnsmasq drops to and group root, mode 0660 (the dirs
 * stay root's). dnsmasq opens both as root before it drops privileges, and
 * reopens the log as its user on SIGUSR2: the owner bits serve the user,
 * the group bits root. Root needs them: under the agent's systemd unit it
 * has no CAP_DAC_OVERRIDE, so to root a file of another owner is "other"
 * unless its group is root's (a dnsmasq:nogroup 0640 lease file failed to
 * open: "cannot open or create lease file ...: Permission denied").
 */
function prepareSteps(spec: DnsmasqSpec, f: DnsmasqFiles, obs: DnsmasqObservation, account: DnsmasqUser, changes: Changes): Command[] {
  const steps: Command[] = [];
  const owned = [f.log];
  if (spec.dhcp) {
    if (!obs.stateDir) steps.push(mutate(["install", "-d", "-m", "0755", f.stateDir]));
    if (obs.legacyLeases && !obs.leases) {
      changes.leases = { old: f.legacyLeases, new: f.leases };
      steps.push(mutate(["mv", "--no-clobber", f.legacyLeases, f.leases]));
    } else if (obs.legacyLeases) {
      steps.push(removeFileStep(f.legacyLeases));
    }
    owned.push(f.leases);
  }
  // Files already as they should be (a dnsmasq that crashed) need nothing: a restart is one command.
  const wrong = owned.filter((path) => obs.owned?.[path] !== `${account.user}:root 660`);
  if (account.user !== "root" && wrong.length > 0) {
    steps.push(mutate(["touch", ...wrong]), mutate(["chown", `${account.user}:root`, ...wrong]), mutate(["chmod", "0660", ...wrong]));
  }
  return steps;
}

/**
 * One dnsmasq per network (DHCP and DNS on its gateway address). Observes
 * its config, hosts file, the pid in its pid file (ours only if that
 * process runs our config: isOurDnsmasq), the service account and where the
 * lease file is. Plans: write what differs; start it when none of ours
 * runs; restart it (TERM, wait for exit, start) when the config changed;
 * SIGHUP when only the hosts file changed (dnsmasq(8): SIGHUP re-reads
 * --dhcp-hostsfile and --addn-hosts). Never a shell: argv only.
 */
export const dnsmasq: ResourceHandler<DnsmasqSpec, DnsmasqObservation> = {
  kind: "dnsmasq",
  async observe(spec, ctx) {
    const f = specFiles(spec, ctx);
    const [conf, hosts, pidText, passwd, group, stateNames, runNames] = await Promise.all([
      ctx.readFile(f.conf),
      ctx.readFile(f.hosts),
      ctx.readFile(f.pid),
      ctx.readFile("/etc/passwd"),
      ctx.readFile("/etc/group"),
      ctx.listDir(f.stateDir),
      ctx.listDir(f.dir),
    ]);
    const obs: DnsmasqObservation = {};
    if (conf !== undefined) obs.conf = conf;
    if (hosts !== undefined) obs.hosts = hosts;
    const account = dnsmasqUser(passwd, group);
    if (account.user !== "root") obs.account = account;
    if (stateNames !== undefined) obs.stateDir = true;
    if (stateNames?.includes(basename(f.leases))) obs.leases = true;
    if (runNames?.includes(basename(f.legacyLeases))) obs.legacyLeases = true;
    const pid = Number(pidText?.trim());
    if (Number.isInteger(pid) && pid > 0) {
      if (isOurDnsmasq(await ctx.processArgv(pid), f.conf)) obs.pid = pid;
    }
    const present = [...(runNames?.includes(basename(f.log)) ? [f.log] : []), ...(obs.leases ? [f.leases] : [])];
    if (obs.pid === undefined && present.length > 0) {
      const r = await ctx.read(["stat", "--format=%n %U:%G %a", ...present], { allowFailure: true });
      obs.owned = parseStat(r.stdout);
    }
    return obs;
  },
  // No config, pid or lease file, and no service account to read (/etc/passwd unknown): as root.
  absent: () => ({}),
  // A restarted dnsmasq has another pid: whether ours runs is what a plan depends on.
  stable: ({ pid, ...rest }) => ({ ...rest, running: pid !== undefined }),
  plan(spec, obs, ctx): ResourcePlan {
    const f = specFiles(spec, ctx);
    const account = obs.account ?? { user: "root", group: "root" };
    const conf = dnsmasqConf(spec, f, ctx.owner, account);
    const hosts = dnsmasqHosts(spec);
    const changes: Changes = {};
    const commands: Command[] = [];
    const confChanged = obs.conf !== conf;
    const hostsChanged = obs.hosts !== hosts;
    // The files' diffs (live → desired); `changes` carries the lines only one side has.
    const diff = unifiedDiff(obs.conf, conf, { before: `live: ${f.conf}`, after: `desired: ${f.conf}` }) + unifiedDiff(obs.hosts, hosts, { before: `live: ${f.hosts}`, after: `desired: ${f.hosts}` });
    if (confChanged) {
      changes.config = obs.conf === undefined ? { old: null, new: conf.trim().split("\n").filter(Boolean) } : changedLines(obs.conf, conf);
      commands.push(writeFileStep(f.conf, conf));
    }
    if (hostsChanged) {
      changes.hosts = { old: obs.hosts?.trim().split("\n").filter(Boolean) ?? null, new: hosts.trim().split("\n").filter(Boolean) };
      commands.push(writeFileStep(f.hosts, hosts));
    }
    const start = mutate(["dnsmasq", `--conf-file=${f.conf}`]);
    if (obs.pid === undefined) {
      changes.running = { old: false, new: true };
      commands.push(...prepareSteps(spec, f, obs, account, changes), start);
    } else if (confChanged) {
      changes.running = { old: `pid ${obs.pid} (old config)`, new: "restarted" };
      commands.push(mutate(["kill", "-TERM", String(obs.pid)]), waitExitStep(obs.pid), ...prepareSteps(spec, f, obs, account, changes), start);
    } else if (hostsChanged) {
      commands.push(mutate(["kill", "-HUP", String(obs.pid)]));
    }
    const plan: ResourcePlan = { changes, commands };
    if (diff) plan.diff = diff;
    if (account.user === "root" && commands.length > 0) plan.comment = "no dnsmasq or nobody account on this host: dnsmasq runs as root";
    return plan;
  },
};
