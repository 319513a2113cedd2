/**
 * The packages suite's world: a machine m1 with systemd as PID 1
 * (machine.ts) in netns `sdeb-m1` (eth0 10.96.0.11/24, a veth to netns
 * `sdeb-ctl` at 10.96.0.1; eth1, the uplink OVS takes, a second veth
 * without an address), with nothing of netfleet on its disk: the .deb files of
 * `npm run package` are bound read-only at DEBS, and the test installs them
 * with dpkg inside. Its own prefix (sdeb) and addresses, so it never
 * touches the systemd suite's world (sysd, world.ts).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Machine, REPO, destroyWorldOf } from "./machine.ts";

export const PREFIX = "sdeb";
export const CTL_NS = `${PREFIX}-ctl`;
export const M1_NS = `${PREFIX}-m1`;
export const M1_ADDRESS = "10.96.0.11";
/** The suite's NATS port (issue 16 range 33600-33699); the site's site.nats says the same. */
export const NATS_PORT = 33601;
export const SITE_DIR = join(REPO, "test", "systemd", "debs-site");
/** Where the .deb files appear inside the machine. */
export const DEBS = "/opt/netfleet-debs";

const sh = (argv: string[], timeoutMs = 30_000) => execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });

export interface DebsWorld {
  dir: string;
  m1: Machine;
}

/** Removes what an earlier run left (machine.ts destroyWorldOf: our nspawn by pid, its overlay and dir, our namespaces). */
export async function destroyDebsWorld(w?: DebsWorld): Promise<void> {
  await destroyWorldOf(PREFIX, M1_NS, w);
}

/** Boots m1 with the dir of .deb files `debs` bound at DEBS. */
export async function buildDebsWorld(debs: string): Promise<DebsWorld> {
  await destroyDebsWorld();
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}-world-`));
  const ip = (args: string[]) => sh(["ip", ...args]);
  ip(["netns", "add", CTL_NS]);
  ip(["netns", "add", M1_NS]);
  ip(["-n", CTL_NS, "link", "set", "lo", "up"]);
  ip(["-n", M1_NS, "link", "set", "lo", "up"]);
  ip(["-n", CTL_NS, "link", "add", "v-m1", "type", "veth", "peer", "name", "eth0", "netns", M1_NS]);
  ip(["-n", CTL_NS, "address", "add", "10.96.0.1/24", "dev", "v-m1"]);
  ip(["-n", CTL_NS, "link", "set", "v-m1", "up"]);
  ip(["-n", M1_NS, "address", "add", `${M1_ADDRESS}/24`, "dev", "eth0"]);
  ip(["-n", M1_NS, "link", "set", "eth0", "up"]);
  ip(["-n", CTL_NS, "link", "add", "v-up", "type", "veth", "peer", "name", "eth1", "netns", M1_NS]);
  ip(["-n", CTL_NS, "link", "set", "v-up", "up"]);
  ip(["-n", M1_NS, "link", "set", "eth1", "up"]);
  const client = join(dir, "client");
  mkdirSync(client, { recursive: true, mode: 0o700 });
  const key = join(client, "id_ed25519");
  sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sdeb-test", "-f", key]);
  const m1 = await Machine.boot({
    name: M1_NS,
    hostname: "m1",
    netns: M1_NS,
    dir: join(dir, "m1"),
    authorizedKey: readFileSync(`${key}.pub`, "utf8"),
    binds: [[debs, DEBS]],
  });
  // The machine is this host's / underneath: a container image's policy-rc.d ("exit 101": no service
  // actions from packages) would make deb-systemd-invoke start and stop nothing. A host has none.
  m1.exec(["rm", "-f", "/usr/sbin/policy-rc.d"]);
  return { dir, m1 };
}
