/**
 * A machine where systemd is PID 1, for the systemd suite: this machine's own
 * root filesystem, read through an overlay (writes land in DIR/upper, the
 * machine's "disk"), booted with `systemd-nspawn -b` (systemd-nspawn(1),
 * Debian package systemd-container) in a network namespace of its own. No
 * image to build: the lower layer is `/` as it is, so the machine has every
 * package this one has (scripts/setup.sh), and boots in ~5 s.
 *
 * Before boot, its upper layer gets: a machine id of its own, a hostname,
 * a fresh sshd host key and a drop-in taking root's key `authorizedKey`
 * only, and a mask over every unit this machine's /etc enables except sshd
 * and Open vSwitch (no postgres, timers, libvirtd, nats-server in the guest).
 * The repository is bound read-only at /opt/netfleet-src (its own mount may
 * not be under `/`'s filesystem; a bind works wherever it lives).
 *
 * Needs: root, systemd-nspawn, overlayfs. On a host whose /run is not a
 * tmpfs, nspawn refuses to clean /run/systemd/nspawn/propagate ("Attempted to
 * remove disk file system ... and we can't allow that"): a small tmpfs is
 * mounted there first (and left: it is empty between runs). nspawn runs
 * with --keep-unit --register=no since the host may have no systemd (no
 * D-Bus to register with: "Failed to open system bus").
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
/** Where the repository appears inside the machine. */
export const SRC = "/opt/netfleet-src";

/** Units the machine keeps of those this host's /etc enables: everything else there is masked. */
const KEEP = new Set(["ssh.service", "sshd.service", "openvswitch-switch.service", "ovs-vswitchd.service", "ovsdb-server.service", "ovs-record-hostname.service"]);
/** Masked whatever the host enables (installed by setup.sh on CI machines; never wanted in the guest). */
const ALWAYS_MASK = ["libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket", "virtlogd.socket", "virtlockd.socket", "nats-server.service", "postgresql.service", "systemd-timesyncd.service", "getty@tty1.service", "console-getty.service", "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer", "e2scrub_reap.service"];

export interface MachineSpec {
  /** Machine name and prefix of what it makes (netns `<name>`), e.g. "sysd-m1". */
  name: string;
  hostname: string;
  /** Its network namespace, made by the caller (`ip netns add`), holding its interfaces. */
  netns: string;
  /** Working dir: upper/, work/, root/, console.log. Made here; removed by stop(). */
  dir: string;
  /** Public key line accepted for root over SSH. */
  authorizedKey: string;
  /** Files to put on the machine's disk before boot: path -> [content, mode]. */
  files?: Record<string, [string, number]>;
  /** Host paths bound read-only into the machine: [host path, machine path]. */
  binds?: [string, string][];
}

const sh = (argv: string[], timeoutMs = 30_000) => execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });

/** Whether this host can boot a machine: the tools are there and we are root. */
export function machineSupport(): { ok: true } | { ok: false; why: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: "not root" };
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
  const packages: Record<string, string> = { "systemd-nspawn": "systemd-container", nsenter: "util-linux", "ssh-keygen": "openssh-client" };
  for (const [tool, pkg] of Object.entries(packages)) {
    if (!dirs.some((d) => existsSync(join(d, tool)))) return { ok: false, why: `${tool} is not installed (Debian package ${pkg})` };
  }
  if (!existsSync("/lib/systemd/systemd") && !existsSync("/usr/lib/systemd/systemd")) return { ok: false, why: "systemd is not installed" };
  return { ok: true };
}

function fsType(path: string): string {
  return sh(["findmnt", "-n", "-o", "FSTYPE", "--target", path]).trim();
}

/** See the module comment: nspawn wants /run/systemd/nspawn on a tmpfs. */
function ensureNspawnRunDir(): void {
  const dir = "/run/systemd/nspawn";
  mkdirSync(dir, { recursive: true });
  if (fsType(dir) !== "tmpfs") sh(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4m", "tmpfs", dir]);
}

function write(root: string, path: string, content: string, mode: number): void {
  const full = join(root, path);
  mkdirSync(join(full, ".."), { recursive: true });
  rmSync(full, { force: true });
  writeFileSync(full, content, { mode });
  chmodSync(full, mode);
}

/** Names of the units this host's /etc/systemd/system enables (its *.wants and *.requires dirs). */
function enabledUnits(): string[] {
  const base = "/etc/systemd/system";
  const out = new Set<string>();
  for (const d of existsSync(base) ? readdirSync(base) : []) {
    if (!d.endsWith(".wants") && !d.endsWith(".requires")) continue;
    for (const u of readdirSync(join(base, d))) out.add(u);
  }
  return [...out];
}

/** A booted machine. */
export class Machine {
  readonly spec: MachineSpec;
  private child?: ChildProcess;
  /** Host pid of the machine's PID 1 (systemd). */
  leader = 0;
  bootMs = 0;

  private constructor(spec: MachineSpec) {
    this.spec = spec;
  }

  get root(): string {
    return join(this.spec.dir, "root");
  }

  /** A path of the machine's disk as the host sees it: its upper layer (what the machine wrote) over `/`. */
  file(path: string): string {
    return join(this.root, path);
  }

  /** Makes the overlay, writes the pre-boot files, boots, waits for `systemctl is-system-running` (bounded by `timeoutMs`). */
  static async boot(spec: MachineSpec, timeoutMs = 60_000): Promise<Machine> {
    const m = new Machine(spec);
    const t0 = performance.now();
    ensureNspawnRunDir();
    const upper = join(spec.dir, "upper");
    for (const d of ["upper", "work", "root"]) mkdirSync(join(spec.dir, d), { recursive: true });
    write(upper, "etc/machine-id", randomBytes(16).toString("hex") + "\n", 0o444);
    write(upper, "etc/hostname", `${spec.hostname}\n`, 0o644);
    write(upper, "root/.ssh/authorized_keys", spec.authorizedKey.trim() + "\n", 0o600);
    chmodSync(join(upper, "root/.ssh"), 0o700);
    const key = join(upper, "etc/ssh/netfleet_test_host_ed25519_key");
    mkdirSync(join(upper, "etc/ssh/sshd_config.d"), { recursive: true });
    rmSync(key, { force: true });
    rmSync(`${key}.pub`, { force: true });
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", spec.hostname, "-f", key]);
    write(
      upper,
      "etc/ssh/sshd_config.d/netfleet-test.conf",
      ["HostKey /etc/ssh/netfleet_test_host_ed25519_key", "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PrintMotd no", ""].join("\n"),
      0o644,
    );
    const masks = new Set([...enabledUnits().filter((u) => !KEEP.has(u) && !u.endsWith(".target")), ...ALWAYS_MASK]);
    for (const u of masks) {
      const link = join(upper, "etc/systemd/system", u);
      mkdirSync(join(link, ".."), { recursive: true });
      rmSync(link, { force: true });
      symlinkSync("/dev/null", link);
    }
    for (const [path, [content, mode]] of Object.entries(spec.files ?? {})) write(upper, path.replace(/^\//, ""), content, mode);
    sh(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=/,upperdir=${upper},workdir=${join(spec.dir, "work")}`, m.root]);
    const log = openSync(join(spec.dir, "console.log"), "a");
    m.child = spawn(
      "systemd-nspawn",
      [
        "--quiet",
        `--directory=${m.root}`,
        `--machine=${spec.name}`,
        "--keep-unit",
        "--register=no",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
        `--network-namespace-path=/run/netns/${spec.netns}`,
        `--bind-ro=${REPO}:${SRC}`,
        ...(spec.binds ?? []).map(([from, to]) => `--bind-ro=${from}:${to}`),
        // nspawn adds CAP_NET_ADMIN for --private-network, not for --network-namespace-path: the
        // machine manages its own network namespace (the agent does ip, nft, ovs there).
        "--capability=CAP_NET_ADMIN",
        "--console=pipe",
        "--boot",
      ],
      { stdio: ["pipe", log, log] },
    );
    closeSync(log);
    const until = Date.now() + timeoutMs;
    while (m.leader === 0) {
      if (m.child.exitCode !== null) throw new Error(`systemd-nspawn exited ${m.child.exitCode}: ${m.console().slice(-2000)}`);
      if (Date.now() > until) throw new Error(`no PID 1 in the machine after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
      m.leader = m.childPid();
    }
    // systemctl is-system-running: "starting" until boot is done, then "running" ("degraded": a unit failed).
    // Polled, since --wait needs systemd's bus, which is not there yet in the first moments.
    let state = "";
    while (state !== "running" && state !== "degraded") {
      if (m.child.exitCode !== null) throw new Error(`systemd-nspawn exited ${m.child.exitCode}: ${m.console().slice(-2000)}`);
      if (Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 250));
      state = m.run(["systemctl", "is-system-running"], 10_000).stdout.trim();
    }
    if (state !== "running") {
      const failed = m.run(["systemctl", "--failed", "--no-legend", "--plain"], 10_000).stdout;
      throw new Error(`machine ${spec.name} is ${state || "not up"} after ${timeoutMs} ms; failed units: ${failed.trim() || "none"}`);
    }
    m.bootMs = Math.round(performance.now() - t0);
    return m;
  }

  /**
   * The machine's PID 1 as the host sees it: the child of nspawn that runs systemd. nspawn forks
   * helpers first (an outer child that exits once the inner one runs), so the pid is looked up
   * until its command is systemd.
   */
  private childPid(): number {
    const pid = this.child?.pid;
    if (!pid) return 0;
    try {
      for (const kid of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean)) {
        if (readFileSync(`/proc/${kid}/comm`, "utf8").trim() === "systemd") return Number(kid);
      }
    } catch {
      /* not yet, or gone */
    }
    return 0;
  }

  /** What the machine printed on its console (systemd's boot messages). */
  console(): string {
    try {
      return readFileSync(join(this.spec.dir, "console.log"), "utf8");
    } catch {
      return "";
    }
  }

  /**
   * Runs argv inside the machine (all its namespaces, as root), bounded by `timeoutMs`; returns stdout.
   * @throws the child's error (with stdout, stderr, status) when it exits non-zero, unless `allowFailure`.
   */
  exec(argv: string[], timeoutMs = 30_000, allowFailure = false): string {
    try {
      return sh(["nsenter", "-t", String(this.leader), "-a", "--", ...argv], timeoutMs);
    } catch (err) {
      if (allowFailure) return String((err as { stdout?: string }).stdout ?? "");
      const e = err as { stderr?: string; status?: number };
      throw new Error(`${argv.join(" ")} in ${this.spec.name}: exit ${e.status ?? "?"}: ${String(e.stderr ?? (err as Error).message).trim()}`);
    }
  }

  /** Like exec, never throws: exit code, stdout, stderr. */
  run(argv: string[], timeoutMs = 30_000): { code: number; stdout: string; stderr: string } {
    try {
      return { code: 0, stdout: sh(["nsenter", "-t", String(this.leader), "-a", "--", ...argv], timeoutMs), stderr: "" };
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; status?: number | null };
      return { code: e.status ?? -1, stdout: String(e.stdout ?? ""), stderr: String(e.stderr ?? (err as Error).message) };
    }
  }

  /** `systemctl show UNIT -p P1,P2...` as a record. */
  show(unit: string, props: string[]): Record<string, string> {
    const out = this.exec(["systemctl", "show", unit, `--property=${props.join(",")}`]);
    return Object.fromEntries(out.trim().split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  }

  /** Host-side pid of a pid of the machine (its /proc/PID/status NSpid holds both). */
  hostPid(machinePid: number): number | undefined {
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const ns = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${d}/status`, "utf8"))?.[1]?.trim().split(/\s+/).map(Number);
        if (ns && ns.length >= 2 && ns[ns.length - 1] === machinePid && this.inMachine(Number(d))) return Number(d);
      } catch {
        /* gone */
      }
    }
    return undefined;
  }

  private inMachine(pid: number): boolean {
    try {
      return execFileSync("readlink", [`/proc/${pid}/ns/pid`], { encoding: "utf8" }).trim() === execFileSync("readlink", [`/proc/${this.leader}/ns/pid`], { encoding: "utf8" }).trim();
    } catch {
      return false;
    }
  }

  /** Powers the machine off (SIGTERM to nspawn: a clean shutdown), SIGKILL after `timeoutMs`; unmounts and removes its dir. */
  async stop(timeoutMs = 20_000): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
    unmountAndRemove(this.spec.dir);
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo). */
function mountsUnder(dir: string): string[] {
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\040/g, " "))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts every mount under DIR (a machine's overlay) and removes DIR. */
export function unmountAndRemove(dir: string): void {
  for (let round = 0; round < 5; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) break;
    for (const p of points) {
      try {
        sh(["umount", p]);
      } catch {
        if (round >= 2) {
          try {
            sh(["umount", "-l", p]);
          } catch {
            /* next round */
          }
        }
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** The network namespaces whose names start with `<prefix>-`. */
function namespacesOf(prefix: string): string[] {
  try {
    return execFileSync("ip", ["netns", "list"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 })
      .split("\n")
      .map((l) => l.split(" ")[0]!)
      .filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    return [];
  }
}

/** Pids of systemd-nspawn processes running machine `name` (by its exact --machine argument). */
function nspawnsOf(name: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (argv[0]?.endsWith("systemd-nspawn") && argv.includes(`--machine=${name}`)) pids.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/**
 * Removes what a world of `prefix` left: `world.m1` stopped when given, any
 * systemd-nspawn of machine `machineName` (SIGTERM, up to 20 s, then SIGKILL,
 * by pid), the `<prefix>-world-*` overlays under the temp dir, the
 * `<prefix>-*` namespaces, and `world.dir`. Only what carries the prefix.
 */
export async function destroyWorldOf(prefix: string, machineName: string, world?: { m1: Machine; dir: string }): Promise<void> {
  if (world) await world.m1.stop();
  for (const pid of nspawnsOf(machineName)) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      /* gone */
    }
  }
  for (let i = 0; i < 100 && nspawnsOf(machineName).length > 0; i++) await new Promise((r) => setTimeout(r, 200));
  for (const pid of nspawnsOf(machineName)) process.kill(pid, "SIGKILL");
  for (const d of readdirSync(tmpdir())) if (d.startsWith(`${prefix}-world-`)) unmountAndRemove(join(tmpdir(), d));
  for (const n of namespacesOf(prefix)) execFileSync("ip", ["netns", "del", n], { stdio: "ignore", timeout: 30_000 });
  if (world) rmSync(world.dir, { recursive: true, force: true });
}
