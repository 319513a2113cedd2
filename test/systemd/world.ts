/**
 * The systemd suite's world: a machine m1 with systemd as PID 1
 * (machine.ts) in netns `sysd-m1` (eth0 10.95.0.11/24), wired by a veth to
 * netns `sysd-ctl` (10.95.0.1/24), where `netfleet bootstrap` runs as an
 * operator's machine would. On m1, before boot: netfleet serve's unit,
 * sysusers file and env file exactly as packaging/systemd ships them, and
 * /usr/local/bin/netfleet running the repository's CLI (bound at SRC).
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Machine, REPO, SRC, destroyWorldOf } from "./machine.ts";

export const PREFIX = "sysd";
export const CTL_NS = `${PREFIX}-ctl`;
export const M1_NS = `${PREFIX}-m1`;
export const SITE_DIR = join(REPO, "test", "systemd", "site");
export const NATS_PORT = 32500;
export const M1_ADDRESS = "10.95.0.11";
const NODE_SH = join(REPO, "scripts", "node.sh");
export const PACKAGING = join(REPO, "packaging", "systemd");

const sh = (argv: string[], timeoutMs = 30_000) => execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });

export interface World {
  dir: string;
  m1: Machine;
  clientKey: string;
  knownHosts: string;
  tokenFile: string;
}

/** Removes what an earlier run left (machine.ts destroyWorldOf: our nspawn by pid, its overlay and dir, our namespaces). */
export async function destroyWorld(w?: World): Promise<void> {
  await destroyWorldOf(PREFIX, M1_NS, w);
}

export async function buildWorld(): Promise<World> {
  await destroyWorld();
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}-world-`));
  const ip = (args: string[]) => sh(["ip", ...args]);
  ip(["netns", "add", CTL_NS]);
  ip(["netns", "add", M1_NS]);
  ip(["-n", CTL_NS, "link", "set", "lo", "up"]);
  ip(["-n", M1_NS, "link", "set", "lo", "up"]);
  ip(["-n", CTL_NS, "link", "add", "v-m1", "type", "veth", "peer", "name", "eth0", "netns", M1_NS]);
  ip(["-n", CTL_NS, "address", "add", "10.95.0.1/24", "dev", "v-m1"]);
  ip(["-n", CTL_NS, "link", "set", "v-m1", "up"]);
  ip(["-n", M1_NS, "address", "add", `${M1_ADDRESS}/24`, "dev", "eth0"]);
  ip(["-n", M1_NS, "link", "set", "eth0", "up"]);
  const client = join(dir, "client");
  mkdirSync(client, { recursive: true, mode: 0o700 });
  const clientKey = join(client, "id_ed25519");
  sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sysd-test", "-f", clientKey]);
  const pkg = (name: string) => readFileSync(join(PACKAGING, name), "utf8");
  const m1 = await Machine.boot({
    name: M1_NS,
    hostname: "m1",
    netns: M1_NS,
    dir: join(dir, "m1"),
    authorizedKey: readFileSync(`${clientKey}.pub`, "utf8"),
    // A Node >= 22 on the machine's PATH (its /usr/bin/node may be older): bootstrap then uses it
    // instead of uploading ours (121 MB, 40 s here); the shipped-Node path is the bootstrap suite's.
    binds: [[process.execPath, "/usr/local/bin/node"]],
    files: {
      "/etc/systemd/system/netfleet-serve.service": [pkg("netfleet-serve.service"), 0o644],
      "/usr/lib/sysusers.d/netfleet.conf": [pkg("netfleet.sysusers"), 0o644],
      "/etc/netfleet/serve.env": [pkg("serve.env").replace(/^NETFLEET_SITE=.*$/m, `NETFLEET_SITE=${SRC}/test/systemd/site`).replace(/^NETFLEET_SERVE_OPTIONS=.*$/m, `NETFLEET_SERVE_OPTIONS=--listen ${M1_ADDRESS}:${NATS_PORT}`), 0o644],
      // The netfleet CLI of the repository, the way an operator links a checkout's.
      "/usr/local/bin/netfleet": [`#!/bin/sh\nexec ${SRC}/scripts/node.sh ${SRC}/packages/controller/src/cli.ts "$@"\n`, 0o755],
    },
  });
  return { dir, m1, clientKey, knownHosts: join(client, "known_hosts"), tokenFile: join(client, "join.token") };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** `netfleet bootstrap` (the real CLI) in the operator's namespace, against m1 only. */
export function runBootstrap(w: World, args: string[]): Promise<CliResult> {
  const t0 = performance.now();
  const child = spawn(
    "ip",
    ["netns", "exec", CTL_NS, "sh", NODE_SH, join(REPO, "packages/controller/src/cli.ts"), "bootstrap", SITE_DIR, `--token-file=${w.tokenFile}`, "--known-hosts", w.knownHosts, "--identity", w.clientKey, "--limit", "m1", ...args],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HOME: join(w.dir, "client"), SSH_AUTH_SOCK: "" } },
  );
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`bootstrap did not finish within 120 s\n${stdout}\n${stderr}`));
    }, 120_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr, ms: Math.round(performance.now() - t0) });
    });
  });
}

/** JSON lines a unit printed to the journal (journalctl -u UNIT -o cat), parsed where they parse. */
export function journal(m: Machine, unit: string): Record<string, unknown>[] {
  const out = m.exec(["journalctl", "--no-pager", "-o", "cat", "-u", unit], 15_000, true);
  const rows: Record<string, unknown>[] = [];
  for (const line of out.split("\n")) {
    const i = line.indexOf("{");
    if (i < 0) continue;
    try {
      rows.push(JSON.parse(line.slice(i)) as Record<string, unknown>);
    } catch {
      /* not JSON */
    }
  }
  return rows;
}

export async function eventually<T>(what: string, timeoutMs: number, check: () => T | undefined | false): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** /proc/PID/status of a host pid as a record (Uid, CapBnd, NoNewPrivs, Seccomp, ...). */
export function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, "utf8")
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
  );
}

export function writeToken(w: World, token: string): void {
  writeFileSync(w.tokenFile, token.trim() + "\n", { mode: 0o600 });
}

export const exists = existsSync;
