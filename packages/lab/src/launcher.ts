/**
 * Starts libvirtd with private /run, /var/lib, /var/cache, /var/log,
 * /etc/libvirt and passwd/group. Run as
 *
 *   ip netns exec NS unshare -m --propagation private env OVS_RUNDIR=DIR node launcher.ts LIBVIRT_DIR OVS_DIR
 *
 * so the bind mounts below live only in libvirtd's own mount namespace.
 * Every step is an argv (mount, libvirtd); no shell.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join, relative } from "node:path";

const SAFE_PATH = /^\/[A-Za-z0-9_./-]+$/;

function bind(source: string, target: string, recursive = false): void {
  execFileSync("mount", [recursive ? "--rbind" : "--bind", source, target], { stdio: ["ignore", "ignore", "inherit"] });
}

/**
 * Binds the private directories under `lvDir` over the system's, keeps
 * `ovsDir` visible, and starts `libvirtd -d`. Call it only in a private mount
 * namespace (see the file comment): the mounts would otherwise change the
 * machine's.
 * @throws Error when a path holds characters outside [A-Za-z0-9_./-], or when mount or libvirtd fails.
 */
export function launch(lvDir: string, ovsDir: string): void {
  for (const p of [lvDir, ovsDir]) if (!SAFE_PATH.test(p)) throw new Error(`unsafe path ${JSON.stringify(p)}`);
  const d = (name: string) => join(lvDir, name);
  bind(d("passwd"), "/etc/passwd");
  bind(d("group"), "/etc/group");
  bind(d("varlib"), "/var/lib");
  bind(d("cache"), "/var/cache");
  bind(d("log"), "/var/log");
  bind(d("etc"), "/etc/libvirt");
  // /run goes last: the run dir of the lab may itself be under /run. The host's OVS dir must stay
  // visible at its own path (libvirt's ovs-vsctl finds the db through OVS_RUNDIR), so when it is
  // under /run it is bound into the private run dir first and carried along by --rbind.
  const run = d("run");
  if (ovsDir.startsWith("/run/")) {
    const keep = join(run, relative("/run", ovsDir));
    mkdirSync(keep, { recursive: true });
    bind(ovsDir, keep);
  }
  bind(run, "/run", true);
  mkdirSync("/run/libvirt", { recursive: true });
  const err = openSync(join("/run", "libvirt", "libvirtd.stderr"), "a");
  try {
    // -d: libvirtd forks into the background and this launcher returns.
    execFileSync("libvirtd", ["-d", "--pid-file=/run/libvirt/libvirtd.pid"], { stdio: ["ignore", err, err] });
  } finally {
    closeSync(err);
  }
}

if (import.meta.main) {
  const [lvDir, ovsDir] = process.argv.slice(2);
  if (!lvDir || !ovsDir) {
    process.stderr.write("usage: launcher.ts LIBVIRT_DIR OVS_DIR\n");
    process.exit(64);
  }
  launch(lvDir, ovsDir);
}
