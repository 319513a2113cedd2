/**
 * Tier 2 harness: boots Debian's kernel (which has bonding, 8021q and the OVS
 * kernel datapath, unlike the machine's own kernel) under qemu TCG, with the
 * host's `/` shared read-only over 9p under a tmpfs overlay, runs one guest
 * bash script from a per-run share and hands back what the guest wrote there.
 *
 *   sh scripts/node.sh test/kernel/harness.ts SCRIPT [FILE...]   # one boot, for debugging
 *
 * Set-up is idempotent and lives in $NFKERNEL_DIR (default /tmp/nfkernel): the
 * kernel and busybox-static packages (apt-get download), the extracted kernel
 * with its modules.dep, and a small initramfs. Every external step is bounded.
 * Env: NFKERNEL_DIR, NFK_KVER (kernel flavour), NFK_SMP, NFK_MEM (MiB), NFK_TIMEOUT (s: the guest's bound, CLI and kernel.test.ts).
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";

export const GUEST_DIR = join(import.meta.dirname, "guest");
export const REPO = resolve(import.meta.dirname, "../..");
const WORK = process.env.NFKERNEL_DIR ?? "/tmp/nfkernel";
const DEFAULT_KVER = "6.1.0-56-amd64";
/** Loaded in this order by the initramfs: PCI virtio, 9p over virtio, overlayfs. */
const INITRD_MODULES = ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "netfs", "fscache", "9pnet", "9p", "9pnet_virtio", "overlay"];
const RUNS_KEPT = 3;

function log(message: string): void {
  process.stderr.write(`kernel-harness: ${message}\n`);
}

function run(argv: string[], options: { cwd?: string; timeoutS: number; env?: Record<string, string> }): string {
  const [file, ...args] = argv;
  return execFileSync("timeout", ["--kill-after=5", String(options.timeoutS), file!, ...args], {
    cwd: options.cwd,
    env: options.env ? { ...process.env, ...options.env } : process.env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 16 * 1024 * 1024,
  });
}

function onPath(tool: string): boolean {
  const dirs = new Set([...(process.env.PATH ?? "").split(":").filter(Boolean), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]);
  return [...dirs].some((dir) => existsSync(join(dir, tool)));
}

/**
 * The guest runs the host's own binaries (its / is the host's, read-only), so
 * these must be installed here; scripts/setup.sh installs them all. No /dev/kvm
 * is needed: the guest runs under TCG.
 */
const GUEST_TOOLS: [tool: string, pkg: string][] = [
  ["qemu-system-x86_64", "qemu-system-x86"],
  ["apt-get", "apt"],
  ["dpkg", "dpkg"],
  ["depmod", "kmod"],
  ["ip", "iproute2"],
  ["bridge", "iproute2"],
  ["unshare", "util-linux"],
  ["ovsdb-server", "openvswitch-switch"],
  ["ovs-vswitchd", "openvswitch-switch"],
  ["libvirtd", "libvirt-daemon"],
  ["virsh", "libvirt-clients"],
  ["dnsmasq", "dnsmasq-base"],
  ["nft", "nftables"],
  ["tcpdump", "tcpdump"],
  ["ping", "iputils-ping"],
  ["dig", "dnsutils"],
];

/** Why the kernel tier cannot run here, or undefined when it can. */
export function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (the guest shares the host's / and runs the agent as root)";
  const missing = GUEST_TOOLS.filter(([tool]) => !onPath(tool));
  if (missing.length > 0) {
    return `not installed: ${missing.map(([tool, pkg]) => `${tool} (Debian package ${pkg})`).join(", ")}; sh scripts/setup.sh installs them`;
  }
  return undefined;
}

export interface KernelImage {
  version: string;
  vmlinuz: string;
  initrd: string;
  /** Host path of the extracted modules tree; the guest binds it on /lib/modules. */
  modules: string;
}

function debIn(dir: string, prefix: string): string | undefined {
  const hit = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith(".deb")).sort() : [];
  return hit.length > 0 ? join(dir, hit[hit.length - 1]!) : undefined;
}

function download(pkg: string, debs: string): void {
  log(`downloading ${pkg}`);
  run(["apt-get", "download", pkg], { cwd: debs, timeoutS: 300 });
}

/** Newest Debian kernel flavour the archive offers, when the pinned one is gone. */
function newestKernel(): string {
  const out = run(["apt-cache", "search", "--names-only", "^linux-image-[0-9].*-amd64$"], { timeoutS: 60 });
  const versions = out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n && !/cloud|rt-amd64|unsigned|dbg/.test(n))
    .map((n) => n.replace(/^linux-image-/, ""))
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  const newest = versions[versions.length - 1];
  if (!newest) throw new Error("apt-cache offers no linux-image-*-amd64 package");
  return newest;
}

/** newc cpio of `root` plus a /dev/console node, gzipped (the host has no cpio binary). */
function buildCpio(root: string): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const entry = (name: string, mode: number, data: Buffer = Buffer.alloc(0), rdev: [number, number] = [0, 0]) => {
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], Buffer.byteLength(name) + 1, 0];
    const header = Buffer.from("070701" + fields.map((v) => v.toString(16).padStart(8, "0")).join("") + name + "\0");
    parts.push(header, Buffer.alloc((4 - (header.length % 4)) % 4), data, Buffer.alloc((4 - (data.length % 4)) % 4));
  };
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = lstatSync(path);
      const rel = relative(root, path);
      if (st.isSymbolicLink()) entry(rel, st.mode, Buffer.from(readlinkSync(path)));
      else if (st.isFile()) entry(rel, st.mode, readFileSync(path));
      else if (st.isDirectory()) {
        entry(rel, st.mode);
        walk(path);
      }
    }
  };
  walk(root);
  entry("dev/console", 0o020600, Buffer.alloc(0), [5, 1]);
  entry("TRAILER!!!", 0);
  return gzipSync(Buffer.concat(parts), { level: 1 });
}

/** Idempotent: downloads, extracts and builds only what is missing or stale. */
export function prepareKernel(): KernelImage {
  const debs = join(WORK, "debs");
  mkdirSync(debs, { recursive: true });
  let version = process.env.NFK_KVER ?? DEFAULT_KVER;
  if (!debIn(debs, `linux-image-${version}_`)) {
    try {
      download(`linux-image-${version}`, debs);
    } catch (err) {
      const fallback = newestKernel();
      log(`linux-image-${version} unavailable (${(err as Error).message.split("\n")[0]}); using linux-image-${fallback}`);
      version = fallback;
      if (!debIn(debs, `linux-image-${version}_`)) download(`linux-image-${version}`, debs);
    }
  }
  const kern = join(WORK, `kern-${version}`);
  const modules = join(kern, "lib/modules");
  if (!existsSync(join(modules, version, "modules.dep"))) {
    log(`extracting linux-image-${version} and running depmod`);
    const tmp = `${kern}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    run(["dpkg", "-x", debIn(debs, `linux-image-${version}_`)!, tmp], { timeoutS: 300 });
    run(["depmod", "-b", tmp, version], { timeoutS: 120 }); // the .deb ships no modules.dep
    rmSync(kern, { recursive: true, force: true });
    renameSync(tmp, kern);
  }

  const busybox = join(WORK, "bb/bin/busybox");
  if (!existsSync(busybox)) {
    if (!debIn(debs, "busybox-static_")) download("busybox-static", debs);
    rmSync(join(WORK, "bb"), { recursive: true, force: true });
    run(["dpkg", "-x", debIn(debs, "busybox-static_")!, join(WORK, "bb")], { timeoutS: 120 });
  }

  const initrd = join(WORK, `initrd-${version}.gz`);
  const init = readFileSync(join(GUEST_DIR, "initramfs-init"));
  const stamp = createHash("sha256").update(init).update(INITRD_MODULES.join(",")).update(version).digest("hex").slice(0, 16);
  if (!existsSync(initrd) || (existsSync(`${initrd}.stamp`) ? readFileSync(`${initrd}.stamp`, "utf8").trim() : "") !== stamp) {
    log("building initramfs");
    const root = join(WORK, "initrd-root");
    rmSync(root, { recursive: true, force: true });
    for (const d of ["bin", "proc", "sys", "dev", "newroot", "host", "upper", "mods"]) mkdirSync(join(root, d), { recursive: true });
    copyFileSync(busybox, join(root, "bin/busybox"));
    chmodSync(join(root, "bin/busybox"), 0o755);
    for (const applet of ["sh", "mount", "mkdir", "insmod", "switch_root", "poweroff", "cut", "echo"]) {
      execFileSync("ln", ["-sf", "busybox", join(root, "bin", applet)]);
    }
    const all = run(["find", join(modules, version), "-name", "*.ko"], { timeoutS: 60 }).split("\n");
    for (const m of INITRD_MODULES) {
      const ko = all.find((p) => basename(p) === `${m}.ko`);
      if (!ko) throw new Error(`module ${m}.ko not found in linux-image-${version}`);
      copyFileSync(ko, join(root, "mods", `${m}.ko`));
    }
    copyFileSync(join(GUEST_DIR, "initramfs-init"), join(root, "init"));
    chmodSync(join(root, "init"), 0o755);
    writeFileSync(`${initrd}.tmp`, buildCpio(root));
    renameSync(`${initrd}.tmp`, initrd);
    writeFileSync(`${initrd}.stamp`, stamp + "\n");
  }
  return { version, vmlinuz: join(kern, "boot", `vmlinuz-${version}`), initrd, modules };
}

export interface GuestRun {
  /** The per-run share (the guest's /xfer); kept for inspection, older runs are pruned. */
  dir: string;
  /** Exit code of the guest script, or null when the guest never wrote one. */
  rc: number | null;
  qemuExit: number | null;
  timedOut: boolean;
  wallMs: number;
  /** The guest script's stdout and stderr. */
  log: string;
  /** Serial console: boot messages and progress lines. */
  console: string;
}

export interface BootOptions {
  /** File name under test/kernel/guest/ that the guest runs (or a path to any script). */
  script: string;
  /** Extra files for the share: destination path relative to /xfer -> host source path. */
  files?: Record<string, string>;
  timeoutS?: number;
  /** Called with the run directory before the boot, e.g. to write inputs into it. */
  prepare?: (dir: string) => void;
}

function pruneRuns(keep: number): void {
  const runs = readdirSync(WORK)
    .filter((f) => f.startsWith("run-"))
    .map((f) => join(WORK, f))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
  for (const dir of runs.slice(0, Math.max(0, runs.length - keep))) rmSync(dir, { recursive: true, force: true });
}

/** One boot: the guest runs /xfer/guest/<script>; resolves when qemu has exited. */
export async function bootGuest(options: BootOptions): Promise<GuestRun> {
  const started = performance.now();
  const image = prepareKernel();
  pruneRuns(RUNS_KEPT - 1);
  const dir = mkdtempSync(join(WORK, "run-"));
  mkdirSync(join(dir, "guest"));
  mkdirSync(join(dir, "out"));
  for (const f of readdirSync(GUEST_DIR)) copyFileSync(join(GUEST_DIR, f), join(dir, "guest", f));
  copyFileSync(join(GUEST_DIR, "init.sh"), join(dir, "init.sh"));
  chmodSync(join(dir, "init.sh"), 0o755);
  let script = options.script;
  if (script.includes("/")) {
    // an ad-hoc script from the command line
    copyFileSync(script, join(dir, "guest", "adhoc.sh"));
    script = "adhoc.sh";
  }
  writeFileSync(join(dir, "run.sh"), `exec bash /xfer/guest/${script}\n`);
  // The guest sees the host's / at the same paths: the same node binary and checkout.
  // Node's compile cache, filled here natively (0.5 s), saves ~3 s per agent start
  // under emulation; entries are checked against the source hash, so never stale.
  const cache = join(WORK, "node-compile-cache");
  run([process.execPath, join(REPO, "packages/agent/src/cli.ts"), "help"], { timeoutS: 60, env: { NODE_COMPILE_CACHE: cache } });
  writeFileSync(join(dir, "env.sh"), `NODE="${process.execPath}"\nREPO="${REPO}"\nexport NODE_COMPILE_CACHE="${cache}"\n`);
  for (const [to, from] of Object.entries(options.files ?? {})) {
    mkdirSync(join(dir, to, ".."), { recursive: true });
    copyFileSync(from, join(dir, to));
  }
  options.prepare?.(dir);

  const timeoutS = options.timeoutS ?? Number(process.env.NFK_TIMEOUT ?? 240);
  const consoleLog = join(dir, "console.log");
  const argv = [
    "--kill-after=10", String(timeoutS),
    "qemu-system-x86_64",
    "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max",
    "-smp", process.env.NFK_SMP ?? "1", "-m", process.env.NFK_MEM ?? "1024",
    "-display", "none", "-serial", `file:${consoleLog}`, "-monitor", "none", "-no-reboot", "-net", "none",
    "-kernel", image.vmlinuz, "-initrd", image.initrd,
    "-append", `console=ttyS0 panic=-1 loglevel=4 nfkmods=${image.modules}`,
    "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    "-virtfs", `local,path=${dir},mount_tag=xfer,security_model=none`,
  ];
  log(`booting linux ${image.version} under TCG (timeout ${timeoutS} s), share ${dir}`);
  const child = spawn("timeout", argv, { stdio: ["ignore", "pipe", "pipe"] });
  let qemuOutput = "";
  child.stdout.on("data", (b: Buffer) => (qemuOutput += b.toString()));
  child.stderr.on("data", (b: Buffer) => (qemuOutput += b.toString()));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const qemuExit = await new Promise<number | null>((resolveExit) => {
    child.on("error", () => resolveExit(null));
    child.on("exit", (code) => resolveExit(code));
  });
  process.removeListener("exit", killOnExit);

  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : "");
  const rcText = read("rc").trim();
  const result: GuestRun = {
    dir,
    rc: /^\d+$/.test(rcText) ? Number(rcText) : null,
    qemuExit,
    timedOut: qemuExit === 124 || qemuExit === 137,
    wallMs: Math.round(performance.now() - started),
    log: read("out.log"),
    console: read("console.log") + (qemuOutput ? `\n[qemu] ${qemuOutput}` : ""),
  };
  log(`guest rc ${result.rc ?? "none"}, qemu exit ${qemuExit}${result.timedOut ? " (timed out)" : ""}, ${(result.wallMs / 1000).toFixed(1)} s`);
  return result;
}

/** A file the guest wrote under /xfer/out, or undefined. */
export function guestFile(run: GuestRun, rel: string): string | undefined {
  const path = join(run.dir, "out", rel);
  return existsSync(path) ? readFileSync(path, "utf8") : undefined;
}

if (import.meta.main) {
  const [script, ...files] = process.argv.slice(2);
  if (!script) {
    process.stderr.write("usage: harness.ts GUEST-SCRIPT [HOST-FILE...]   (files land in /xfer/in/)\n");
    process.exit(64);
  }
  const why = missingPrerequisite();
  if (why) {
    process.stderr.write(`kernel-harness: ${why}\n`);
    process.exit(2);
  }
  const result = await bootGuest({ script, files: Object.fromEntries(files.map((f) => [join("in", basename(f)), f])) });
  process.stdout.write(result.log);
  if (result.rc !== 0) process.stderr.write(result.console.split("\n").slice(-20).join("\n") + "\n");
  process.exit(result.rc ?? 255);
}
