/**
 * A test sshd in a directory of its own, as the lab's Ansible side
 * (ansible.ts) and the bootstrap suite (test/bootstrap/harness.ts) run it:
 * own host key, own authorized_keys, no PAM, no passwords, root by key only,
 * pidfile and log in that directory. One place for the files and the start,
 * so both sides start sshd the same way.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LabExec, waitFor } from "./exec.ts";
import { pidfileAlive } from "./procs.ts";

export const SSHD = "/usr/sbin/sshd";

/**
 * OpenSSH's sshd listens on at most 16 sockets (MAX_LISTEN_SOCKS in
 * sshd.c): with more ListenAddress lines it logs "Too many listen sockets.
 * Enlarge MAX_LISTEN_SOCKS" and exits before writing its pidfile.
 */
export const SSHD_MAX_LISTEN = 16;

/** A new ed25519 key pair without a passphrase at `file` and `file`.pub (replacing any). */
export function sshKeygen(file: string, comment = "netfleet-test"): void {
  rmSync(file, { force: true });
  rmSync(`${file}.pub`, { force: true });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file], { stdio: "ignore" });
}

/** Paths of a test sshd's directory. */
export interface SshdFiles {
  dir: string;
  config: string;
  hostKey: string;
  pidFile: string;
  log: string;
}

/** The files of the test sshd in `dir`. */
export function sshdFiles(dir: string): SshdFiles {
  return { dir, config: join(dir, "sshd_config"), hostKey: join(dir, "ssh_host_ed25519_key"), pidFile: join(dir, "sshd.pid"), log: join(dir, "sshd.log") };
}

/**
 * sshd_config of a test sshd in `dir`, listening on `listen` (address:port
 * each). Many sessions and unauthenticated connections at once are allowed:
 * Ansible with 50 forks opens 50 connections to one sshd. Throws when more
 * than SSHD_MAX_LISTEN sockets are asked (sshd would exit at start).
 */
export function sshdConfig(dir: string, listen: string[]): string {
  if (listen.length === 0 || listen.length > SSHD_MAX_LISTEN) throw new Error(`sshd in ${dir}: ${listen.length} listen addresses asked; sshd takes 1 to ${SSHD_MAX_LISTEN} (MAX_LISTEN_SOCKS)`);
  const f = sshdFiles(dir);
  return [
    ...listen.map((l) => `ListenAddress ${l}`),
    `HostKey ${f.hostKey}`,
    `PidFile ${f.pidFile}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    "PermitRootLogin prohibit-password",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "UsePAM no",
    // Test dirs sit under /tmp (mode 1777), which StrictModes refuses.
    "StrictModes no",
    "PrintMotd no",
    "MaxSessions 64",
    "MaxStartups 200:30:400",
    "Subsystem sftp internal-sftp",
    "",
  ].join("\n");
}

/**
 * Writes a test sshd's files in `dir` (made 0700): its host key (kept when
 * present, unless `newHostKey`), authorized_keys holding `authorizedKey`
 * (a public key line) and sshd_config for `listen`. Returns whether the
 * config changed (a running sshd must be restarted to take it) and the host
 * key's public half ("ssh-ed25519 AAAA...", for known_hosts).
 */
export function writeSshdFiles(dir: string, listen: string[], authorizedKey: string, newHostKey = false): { files: SshdFiles; configChanged: boolean; hostPub: string } {
  const files = sshdFiles(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (newHostKey || !existsSync(files.hostKey)) sshKeygen(files.hostKey, "netfleet-test-host");
  writeFileSync(join(dir, "authorized_keys"), authorizedKey.endsWith("\n") ? authorizedKey : `${authorizedKey}\n`);
  const config = sshdConfig(dir, listen);
  const configChanged = !existsSync(files.config) || readFileSync(files.config, "utf8") !== config;
  writeFileSync(files.config, config);
  const hostPub = readFileSync(`${files.hostKey}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  return { files, configChanged, hostPub };
}

/** The argv of sshd on `dir`'s config, logging to its sshd.log (sshd daemonizes once it listens). */
export function sshdArgv(dir: string): string[] {
  const f = sshdFiles(dir);
  return [SSHD, "-f", f.config, "-E", f.log];
}

/**
 * Starts the test sshd of `dir` with `argv` (sshdArgv(dir), possibly behind
 * `ip netns exec` or a launcher that runs it) unless one already runs on
 * its pidfile; waits up to `timeoutMs` for its pidfile. Returns its pid.
 * Throws when it does not come up, with the last lines of its sshd.log
 * (sshd's reason, e.g. too many listen sockets or a missing /run/sshd).
 */
export async function startSshd(dir: string, argv: string[], what: string, timeoutMs = 10_000): Promise<number> {
  const f = sshdFiles(dir);
  const running = pidfileAlive(f.pidFile, "sshd");
  if (running !== undefined) return running;
  rmSync(f.pidFile, { force: true });
  // sshd refuses to start without its privilege separation directory (Debian makes it in the unit's RuntimeDirectory).
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  await new LabExec().run(argv);
  try {
    await waitFor(`sshd of ${what} (pidfile ${f.pidFile})`, timeoutMs, () => pidfileAlive(f.pidFile, "sshd") !== undefined, 50);
  } catch (err) {
    const log = existsSync(f.log) ? readFileSync(f.log, "utf8").trim().split("\n").slice(-3).join(" | ") : "no sshd.log";
    throw new Error(`${(err as Error).message}; sshd.log: ${log}`);
  }
  return pidfileAlive(f.pidFile, "sshd")!;
}

/** Stops the test sshd of `dir` (by its pidfile, when it is sshd) and waits up to 5 s for it to go. */
export async function stopSshd(dir: string, what: string): Promise<void> {
  const f = sshdFiles(dir);
  const pid = pidfileAlive(f.pidFile, "sshd");
  if (pid === undefined) return;
  process.kill(pid, "SIGTERM");
  await waitFor(`sshd ${pid} of ${what} gone`, 5000, () => pidfileAlive(f.pidFile, "sshd") === undefined, 50);
}
