import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadInventory, type JoinToken } from "@netfleet/shared";
import { ControllerHome } from "../../packages/controller/src/store/home.ts";
import { readJsonLines } from "../json-lines.ts";
import { labProcesses, namespaceExists, netnsInode, readPidfile, sshdFiles, sshKeygen, startSshd, terminate, writeSshdFiles } from "@netfleet/lab";

/**
 * The bootstrap suite's world: a controller namespace (nats-server and the
 * controller service at .1 on a bridge) and one namespace per host, each
 * with a veth on that bridge, its own sshd, and overlays over /etc, /opt,
 * /var (see host-launcher.ts). Traffic never leaves these namespaces. The
 * test process only starts things with `ip netns exec` and reads files.
 */

export const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const SITE_DIR = join(REPO, "test", "bootstrap", "site");
const NODE_SH = join(REPO, "scripts", "node.sh");
export const SUBNET = "10.97.0";
export const NATS_PORT = 4322;

export interface TestHost {
  name: string;
  namespace: string;
  address: string;
  dir: string;
}

export interface World {
  prefix: string;
  dir: string;
  /** The controller's state dir: secrets.json (the site's join token) and credentials/ (agent passwords, the host-token key). */
  stateDir: string;
  ctlNs: string;
  hosts: Map<string, TestHost>;
  join: JoinToken;
  clientKey: string;
  otherKey: string;
  knownHosts: string;
  controller: ControllerProc;
}

const sh = (argv: string[], input?: string) => execFileSync(argv[0]!, argv.slice(1), { stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], encoding: "utf8", ...(input !== undefined ? { input } : {}) });


export interface ControllerProc {
  child: ChildProcess;
  events: Record<string, unknown>[];
  status(): Promise<{ host: string; state: string; reason: string | null; enrolled: boolean }[]>;
}

function startController(w: { stateDir: string; ctlNs: string }): Promise<ControllerProc> {
  const arg = { dir: w.stateDir, address: `${SUBNET}.1`, port: NATS_PORT, siteDir: SITE_DIR };
  const child = spawn("ip", ["netns", "exec", w.ctlNs, "sh", NODE_SH, join(REPO, "test/bootstrap/controller-proc.ts"), JSON.stringify(arg)], { cwd: REPO, stdio: ["pipe", "pipe", "inherit"] });
  const events: Record<string, unknown>[] = [];
  const waiters: ((e: Record<string, unknown>) => void)[] = [];
  readJsonLines(child.stdout!, (parsed, line) => {
    const e = parsed === undefined ? { event: "stdout", line } : (parsed as Record<string, unknown>);
    events.push(e);
    for (const w of waiters.splice(0)) w(e);
  });
  const next = (pred: (e: Record<string, unknown>) => boolean, timeoutMs: number, what: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for the controller: ${what}`)), timeoutMs);
      const check = (e: Record<string, unknown>) => {
        if (pred(e)) {
          clearTimeout(timer);
          resolve(e);
        } else waiters.push(check);
      };
      waiters.push(check);
    });
  const proc: ControllerProc = {
    child,
    events,
    async status() {
      const reply = next((e) => e.event === "status" || e.event === "status-error", 10_000, "status");
      child.stdin!.write("status\n");
      const e = await reply;
      if (e.event !== "status") throw new Error(String(e.error));
      return e.rows as Awaited<ReturnType<ControllerProc["status"]>>;
    },
  };
  return next((e) => e.event === "ready" || e.event === "fatal", 30_000, "ready").then((e) => {
    if (e.event === "fatal") throw new Error(`controller: ${String(e.error)}`);
    return proc;
  });
}

/** The argv that makes `h`'s namespace look like its own machine and starts `mode` there (host-launcher.ts). */
function launcherArgv(h: TestHost, mode: "sshd" | "boot", optSize?: string): string[] {
  return ["ip", "netns", "exec", h.namespace, "unshare", "-m", "-u", "--propagation", "private", "sh", NODE_SH, join(REPO, "test/bootstrap/host-launcher.ts"), h.dir, h.name, mode, ...(optSize ? [optSize] : [])];
}

function launch(h: TestHost, mode: "sshd" | "boot", optSize?: string): void {
  sh(launcherArgv(h, mode, optSize));
}

/** A host of the world: `sshd` runs sshd (on an /opt of `optSize`, with `dpkgWithout` missing from its dpkg database); `bare` is a namespace and link only. */
export interface HostSpec {
  name: string;
  kind: "sshd" | "bare";
  optSize?: string;
  dpkgWithout?: string[];
}

/** /var/lib/dpkg/status without the stanzas of `packages`. */
function dpkgStatusWithout(packages: string[]): string {
  return readFileSync("/var/lib/dpkg/status", "utf8")
    .split(/\n(?=\n)/)
    .filter((stanza) => !packages.includes(/^Package: (\S+)$/m.exec(stanza)?.[1] ?? ""))
    .join("\n");
}

/** Namespaces, links, the hosts (addresses from the site's inventory), the controller. */
export async function buildWorld(prefix: string, specs: HostSpec[]): Promise<World> {
  await destroyWorld(prefix);
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const ctlNs = `${prefix}-ctl`;
  const inventory = loadInventory(SITE_DIR);
  const hosts = new Map<string, TestHost>();
  for (const spec of specs) {
    const address = inventory.hosts.find((h) => h.name === spec.name)?.address;
    if (!address?.startsWith(`${SUBNET}.`)) throw new Error(`${spec.name}: no address on ${SUBNET}.0/24 in ${SITE_DIR}`);
    hosts.set(spec.name, { name: spec.name, namespace: `${prefix}-${spec.name}`, address, dir: join(dir, "hosts", spec.name) });
  }
  const ip = (args: string[]) => sh(["ip", ...args]);
  ip(["netns", "add", ctlNs]);
  ip(["-n", ctlNs, "link", "set", "lo", "up"]);
  ip(["-n", ctlNs, "link", "add", "br0", "type", "bridge", "stp_state", "0"]);
  ip(["-n", ctlNs, "address", "add", `${SUBNET}.1/24`, "dev", "br0"]);
  ip(["-n", ctlNs, "link", "set", "br0", "up"]);
  for (const h of hosts.values()) {
    mkdirSync(h.dir, { recursive: true });
    ip(["netns", "add", h.namespace]);
    ip(["-n", h.namespace, "link", "set", "lo", "up"]);
    ip(["-n", ctlNs, "link", "add", `v-${h.name}`, "type", "veth", "peer", "name", "eth0", "netns", h.namespace]);
    ip(["-n", ctlNs, "link", "set", `v-${h.name}`, "master", "br0", "up"]);
    ip(["-n", h.namespace, "address", "add", `${h.address}/24`, "dev", "eth0"]);
    ip(["-n", h.namespace, "link", "set", "eth0", "up"]);
  }
  const client = join(dir, "client");
  mkdirSync(client, { recursive: true, mode: 0o700 });
  const clientKey = join(client, "id_ed25519");
  const otherKey = join(client, "id_other");
  sshKeygen(clientKey, "nfb-test");
  sshKeygen(otherKey, "nfb-test");
  for (const spec of specs.filter((s) => s.kind === "sshd")) {
    const h = hosts.get(spec.name)!;
    // The lab's test sshd (packages/lab/src/sshd.ts): same files, started by host-launcher.ts (which runs sshdArgv(h.dir)) inside the host's overlays.
    writeSshdFiles(h.dir, [`${h.address}:22`], readFileSync(`${clientKey}.pub`, "utf8"), true);
    if (spec.dpkgWithout) {
      // Written into the overlay's upper layer before it is mounted: that host's dpkg database lacks them.
      mkdirSync(join(h.dir, "upper", "var", "lib", "dpkg"), { recursive: true });
      writeFileSync(join(h.dir, "upper", "var", "lib", "dpkg", "status"), dpkgStatusWithout(spec.dpkgWithout));
    }
    await startSshd(h.dir, launcherArgv(h, "sshd", spec.optSize), h.name);
  }
  // The controller's state dir, as serve would make it: bootstrap mints host tokens from it, the controller checks them with the same key.
  const stateDir = join(dir, "controller");
  const secrets = await new ControllerHome(stateDir).secrets(inventory.site.name);
  const join_: JoinToken = { enrollPassword: secrets.enrollment.enrollPassword, token: secrets.enrollment.token };
  const world: Omit<World, "controller"> = { prefix, dir, stateDir, ctlNs, hosts, join: join_, clientKey, otherKey, knownHosts: join(client, "known_hosts") };
  const controller = await startController(world);
  return { ...world, controller };
}

/** A new host key for `host`; sshd re-reads its keys on SIGHUP (it re-executes itself). */
export async function changeHostKey(w: World, host: string): Promise<void> {
  const h = w.hosts.get(host)!;
  sshKeygen(sshdFiles(h.dir).hostKey, "netfleet-test-host");
  const pid = readPidfile(join(h.dir, "sshd.pid"));
  if (pid === undefined) throw new Error(`no sshd pid for ${host}`);
  process.kill(pid, "SIGHUP");
  // Bounded: the re-executed sshd listens again within a few hundred ms.
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      sh(["ip", "netns", "exec", w.ctlNs, "ssh-keyscan", "-T", "2", "-t", "ed25519", h.address]);
      return;
    } catch {
      /* not yet */
    }
  }
  throw new Error(`sshd of ${host} did not come back after SIGHUP`);
}

/** "Boots" an image host: its overlay already holds the agent, config and unit; starts ExecStart like systemd would. */
export function bootImage(w: World, host: string): void {
  launch(w.hosts.get(host)!, "boot");
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * `netfleet bootstrap` (the real CLI) inside the controller namespace (or, for --image-root, where no network is needed, here).
 * By default it mints a host token per host from the world's state dir (--state-dir); with `siteToken`, the site's join
 * token goes in on stdin (`--token-file -`), as an operator would pipe it: never on a command line.
 */
export function runBootstrap(w: World, args: string[], o: { inNamespace?: boolean; siteToken?: boolean } = {}): Promise<CliResult> {
  const t0 = performance.now();
  const ns = o.inNamespace === false ? [] : ["ip", "netns", "exec", w.ctlNs];
  const child = spawn(ns[0] ?? "sh", [...ns.slice(1), ...(ns.length ? ["sh"] : []), NODE_SH, join(REPO, "packages/controller/src/cli.ts"), "bootstrap", SITE_DIR, ...(o.siteToken ? ["--token-file", "-"] : ["--state-dir", w.stateDir]), "--known-hosts", w.knownHosts, ...args], {
    cwd: REPO,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, HOME: join(w.dir, "client"), SSH_AUTH_SOCK: "" },
  });
  child.stdin!.end(o.siteToken ? `${w.join.token}\n` : "");
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    // Two hosts receive Node (about 100 MB each) over SSH: on a loaded two-core machine that alone can take a minute.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bootstrap did not finish within 240 s\n${stdout}\n${stderr}`));
    }, 240_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr, ms: Math.round(performance.now() - t0) });
    });
  });
}

/** A file of a host as that host sees it (its overlay's upper layer holds everything written there). */
export function hostFile(w: World, host: string, path: string): string {
  return join(w.hosts.get(host)!.dir, "upper", path.replace(/^\//, ""));
}

/** Pid of the agent bootstrap started on a host without systemd: its pidfile is in that host's private /run, seen through sshd's root. */
export function agentPid(w: World, host: string): number | undefined {
  const sshd = readPidfile(join(w.hosts.get(host)!.dir, "sshd.pid"));
  return sshd === undefined ? undefined : readPidfile(`/proc/${sshd}/root/run/netfleet-agent.pid`);
}

/** Every process in the world's namespaces or mentioning its dir is stopped, namespaces deleted, files removed. */
export async function destroyWorld(prefix: string, dir?: string): Promise<void> {
  let names: string[] = [];
  try {
    names = (execFileSync("ip", ["netns", "list"], { encoding: "utf8" }) as string).split("\n").map((l) => l.split(" ")[0]!).filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    /* no namespaces */
  }
  const inodes = new Set(names.map(netnsInode).filter((i): i is number => i !== undefined));
  for (let round = 0; round < 3; round++) {
    const procs = labProcesses({ netnsInodes: inodes, runDir: dir ?? `/nonexistent/${prefix}` });
    if (procs.length === 0) break;
    await terminate(procs.map((p) => p.pid), 3000);
  }
  for (const n of names) if (namespaceExists(n)) execFileSync("ip", ["netns", "del", n]);
  if (dir && existsSync(dir)) rmSync(dir, { recursive: true, force: true });
}

/** A `netfleet-agent run` the test started in a host's namespace (its own dirs under the world's; tools pointed at nothing). */
export interface AgentRun {
  child: ChildProcess;
  output: () => string;
}

/**
 * Starts `netfleet-agent run` (the real CLI, from the sources) in `host`'s
 * namespace as the fleet agent of the world's site, named `host`, with the
 * token from `tokenFile` or, with `stdin`, piped in (`--token-file -`). Its
 * OVS and libvirt paths name sockets that do not exist, so what it applies
 * after enrolling fails without touching this machine's OVS or libvirt.
 */
export function runAgent(w: World, host: string, token: { file: string } | { stdin: string }): AgentRun {
  const h = w.hosts.get(host)!;
  const dir = join(w.dir, "agents", host);
  mkdirSync(dir, { recursive: true });
  const argv = [
    "netns", "exec", h.namespace, "sh", NODE_SH, join(REPO, "packages/agent/src/cli.ts"), "run",
    "--site", "boot", "--nats", `nats://${SUBNET}.1:${NATS_PORT}`, "--name", host,
    "--token-file", "file" in token ? token.file : "-",
    "--state-dir", join(dir, "state"), "--run-dir", join(dir, "run"),
    "--ovs-db", join(dir, "no-ovs.sock"), "--ovs-rundir", join(dir, "no-ovs"), "--libvirt-uri", `qemu+unix:///system?socket=${join(dir, "no-libvirt.sock")}`,
    "--no-watch", "--interval", "600",
  ];
  const child = spawn("ip", argv, { cwd: REPO, stdio: ["pipe", "pipe", "pipe"] });
  child.stdin!.end("stdin" in token ? `${token.stdin}\n` : "");
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

/** `netfleet-agent run ARGS` in `host`'s namespace, for its exit code and output (usage checks). */
export function runAgentRaw(w: World, host: string, args: string[]): { code: Promise<number>; output: () => string } {
  const child = spawn("ip", ["netns", "exec", w.hosts.get(host)!.namespace, "sh", NODE_SH, join(REPO, "packages/agent/src/cli.ts"), "run", "--site", "boot", "--nats", `nats://${SUBNET}.1:${NATS_PORT}`, ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const code = new Promise<number>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("exit", (c) => {
      clearTimeout(timer);
      resolve(c ?? 1);
    });
  });
  return { code, output: () => output };
}

/** Every process's command line (/proc/<pid>/cmdline, NUL-separated words joined by spaces), by pid: what `ps` shows every local user. */
export function commandLines(): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.set(Number(name), readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").join(" ").trim());
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/**
 * Runs `command` on `host` as root over the world's SSH (from the controller namespace, the client key, host keys
 * checked against the world's known_hosts): what an attacker with a shell on that host would do. `command` is the
 * test's own fixed text, parsed by the host's shell.
 */
export function sshRun(w: World, host: string, command: string): string {
  const h = w.hosts.get(host)!;
  return sh(["ip", "netns", "exec", w.ctlNs, "ssh", "-i", w.clientKey, "-o", `UserKnownHostsFile=${w.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", `root@${h.address}`, command]);
}
