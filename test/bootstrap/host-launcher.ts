/**
 * Makes a namespace look like its own machine, then starts what runs on it.
 * Run as
 *
 *   ip netns exec NS unshare -m -u --propagation private node host-launcher.ts HOSTDIR HOSTNAME sshd [OPT_SIZE]
 *   ip netns exec NS unshare -m -u --propagation private node host-launcher.ts HOSTDIR HOSTNAME boot
 *
 * /etc, /opt and /var become overlays whose writes land in HOSTDIR/upper
 * (so what bootstrap installs stays on this "host" and is inspectable),
 * /run a fresh tmpfs (and /opt a tmpfs of OPT_SIZE, e.g. 40m, to play a
 * full disk), and the hostname HOSTNAME, all in this process's own
 * mount and UTS namespaces, which the daemons below inherit.
 *   sshd: starts /usr/sbin/sshd -f HOSTDIR/sshd_config (it daemonizes).
 *   boot: what systemd would do on first boot: starts ExecStart of
 *         /etc/systemd/system/netfleet-agent.service detached, pid in
 *         HOSTDIR/boot.pid, output in HOSTDIR/boot.log.
 * Every step is an argv; no shell.
 */
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const SAFE = /^\/[A-Za-z0-9_./-]+$/;
const [hostDir, hostname, mode, optSize] = process.argv.slice(2);
if (!hostDir || !SAFE.test(hostDir) || !hostname || !/^[a-z0-9-]{1,32}$/.test(hostname) || (mode !== "sshd" && mode !== "boot") || (optSize !== undefined && !/^\d{1,5}m$/.test(optSize))) {
  process.stderr.write("usage: host-launcher.ts HOSTDIR HOSTNAME sshd|boot [OPT_SIZE]\n");
  process.exit(64);
}
const run = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ["ignore", "inherit", "inherit"] });

for (const dir of ["etc", "opt", "var"]) {
  const upper = join(hostDir, "upper", dir);
  const work = join(hostDir, "work", dir);
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  run(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=/${dir},upperdir=${upper},workdir=${work}`, `/${dir}`]);
}
run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"]);
if (optSize) run(["mount", "-t", "tmpfs", "-o", `mode=755,size=${optSize}`, "tmpfs", "/opt"]);
mkdirSync("/run/sshd", { mode: 0o755 });
run(["hostname", hostname]);

if (mode === "sshd") {
  run(["/usr/sbin/sshd", "-f", join(hostDir, "sshd_config"), "-E", join(hostDir, "sshd.log")]);
} else {
  const unit = readFileSync("/etc/systemd/system/netfleet-agent.service", "utf8");
  const exec = /^ExecStart=(.+)$/m.exec(unit)?.[1]?.trim().split(/\s+/);
  if (!exec) throw new Error("the unit has no ExecStart");
  const log = openSync(join(hostDir, "boot.log"), "a");
  const child = spawn(exec[0]!, exec.slice(1), { detached: true, stdio: ["ignore", log, log], cwd: "/" });
  closeSync(log);
  child.unref();
  writeFileSync(join(hostDir, "boot.pid"), `${child.pid}\n`);
}
