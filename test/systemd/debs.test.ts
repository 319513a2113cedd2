/**
 * The packages suite: `npm run package` (packaging/deb/build.ts, run as a
 * user runs it) builds netfleet-node, netfleet-agent and netfleet; on a
 * machine whose PID 1 is systemd (machine.ts, debs-world.ts) they are
 * installed with `dpkg -i`, configured as the README's install section
 * says, started through systemd; serve comes up as its system user, the
 * agent enrolls with a host token, and a rollout reaches it (its bridges,
 * VM port flows and libvirt network appear on the machine). Then `dpkg -r` and
 * `dpkg -P`, and what each leaves: remove keeps state and config, purge
 * drops the state, and neither touches what the admin owns. Reinstalled
 * after the purge, m1 becomes the site's backend: its dnsmasq runs under
 * the agent's unit, and its VM host pieces are pruned.
 *
 * NETFLEET_TEST_DEBS=DIR uses the .deb files in DIR instead of building.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTROLLER_NODE_FLAGS } from "@netfleet/shared/cli/launch";
import { REPO, SRC, machineSupport } from "./machine.ts";
import { CTL_NS, DEBS, M1_ADDRESS, M1_NS, NATS_PORT, buildDebsWorld, destroyDebsWorld, type DebsWorld } from "./debs-world.ts";
import { eventually, journal, procStatus } from "./world.ts";

let w: DebsWorld;
let debsDir = "";
let files: { name: string; file: string }[] = [];
const t0 = performance.now();

const NODE_SH = join(REPO, "scripts", "node.sh");
const BUILD = join(REPO, "packaging", "deb", "build.ts");
const SITE = "/srv/netfleet/site";
const STATE = "/var/lib/netfleet";

/** The build script as a user runs it (scripts/node.sh, what `npm run package` runs). */
function runBuild(args: string[], timeoutMs = 900_000) {
  const t = performance.now();
  const r = spawnSync("sh", [NODE_SH, BUILD, ...args], { cwd: REPO, encoding: "utf8", timeout: timeoutMs });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "", ms: Math.round(performance.now() - t) };
}

const debPath = (name: string) => join(DEBS, files.find((f) => f.name === name)!.file.split("/").at(-1)!);
/** `stat -c FORMAT PATH` inside m1. */
const stat = (path: string, format = "%a %U %G %F") => w.m1.exec(["stat", "-c", format, path]).trim();
const present = (path: string) => w.m1.run(["test", "-e", path]).code === 0 || w.m1.run(["test", "-L", path]).code === 0;
const dpkgStatus = (pkg: string) => w.m1.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", pkg]).stdout.trim();
/** As the netfleet user, the packaged CLI: what the README tells an operator to run. */
const asNetfleet = (args: string[], timeoutMs = 60_000) => w.m1.run(["runuser", "-u", "netfleet", "--", "/usr/bin/netfleet", ...args], timeoutMs);

beforeAll(async () => {
  const support = machineSupport();
  if (!support.ok) throw new Error(`the packages suite cannot boot a machine here: ${support.why} (scripts/setup.sh installs what it needs)`);
  debsDir = process.env.NETFLEET_TEST_DEBS ?? mkdtempSync(join(tmpdir(), "sdeb-debs-"));
  if (!process.env.NETFLEET_TEST_DEBS) {
    const r = runBuild(["--out", debsDir, "--json"]);
    if (r.code !== 0) throw new Error(`npm run package failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    files = (JSON.parse(r.stdout) as { packages: { name: string; file: string }[] }).packages;
    console.log(`npm run package: ${r.ms} ms; ${files.map((f) => f.file.split("/").at(-1)).join(", ")}`);
  } else {
    files = readdirSync(debsDir)
      .filter((f) => f.endsWith(".deb"))
      .map((f) => ({ name: f.split("_")[0]!, file: join(debsDir, f) }));
  }
  w = await buildDebsWorld(debsDir);
  console.log(`machine m1 booted (systemd PID 1): ${w.m1.bootMs} ms`);
}, 1_200_000);

afterAll(async () => {
  await destroyDebsWorld(w);
  // Ours unless NETFLEET_TEST_DEBS named it: also when the build failed halfway.
  if (debsDir && !process.env.NETFLEET_TEST_DEBS) rmSync(debsDir, { recursive: true, force: true });
  console.log(`packages suite: ${Math.round(performance.now() - t0)} ms in all`);
});

describe("npm run package", () => {
  it("builds three packages whose control data says what they need; --help, and a bad option is one line", () => {
    expect(files.map((f) => f.name).sort()).toEqual(["netfleet", "netfleet-agent", "netfleet-node"]);
    const field = (name: string, f: string) => spawnSync("dpkg-deb", ["--field", files.find((x) => x.name === name)!.file, f], { encoding: "utf8" }).stdout.trim();
    expect(field("netfleet-node", "Depends")).toMatch(/^libc6 \(>= [\d.]+\)/);
    expect(field("netfleet-agent", "Architecture")).toBe("all");
    expect(field("netfleet-agent", "Depends")).toBe("netfleet-node (>= 22.18), openvswitch-switch, iproute2, nftables, dnsmasq-base, procps");
    expect(field("netfleet-agent", "Recommends")).toContain("libvirt-daemon-system | libvirt-daemon");
    expect(field("netfleet", "Depends")).toBe("netfleet-node (>= 22.18), nats-server, systemd");
    const control = spawnSync("dpkg-deb", ["--ctrl-tarfile", files.find((x) => x.name === "netfleet")!.file], { encoding: "buffer" }).stdout;
    const list = spawnSync("tar", ["-t"], { input: control, encoding: "utf8" }).stdout;
    expect(list.split("\n").map((l) => l.replace(/^\.\//, "")).filter(Boolean).sort()).toEqual(["conffiles", "control", "md5sums", "postinst", "postrm", "prerm"]);
    const help = runBuild(["--help"], 60_000);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run package/);
    const bad = runBuild(["--compress", "lz4"], 60_000);
    expect(bad).toMatchObject({ code: 1, stdout: "" });
    expect(bad.stderr.trim().split("\n")).toEqual(['netfleet package: --compress "lz4": want gzip, xz or zstd']);
  });
});

describe("the packages on a machine where systemd is PID 1", () => {
  it("dpkg -i installs all three: files, modes, owners, the system user; units enabled, serve not started (no site yet), the agent skipped (no agent.json)", () => {
    const t = performance.now();
    w.m1.exec(["dpkg", "-i", debPath("netfleet-node"), debPath("netfleet-agent"), debPath("netfleet")], 300_000);
    console.log(`dpkg -i (three packages): ${Math.round(performance.now() - t)} ms`);
    for (const p of ["netfleet-node", "netfleet-agent", "netfleet"]) expect(dpkgStatus(p), p).toBe("ii");
    expect(stat("/usr/lib/netfleet-node/bin/node")).toBe("755 root root regular file");
    expect(w.m1.exec(["/usr/lib/netfleet-node/bin/node", "-p", "process.versions.node"]).trim()).toMatch(/^2[2-9]\./);
    expect(stat("/opt/netfleet/agent.mjs")).toBe("644 root root regular file");
    expect(w.m1.exec(["readlink", "/opt/netfleet/node"]).trim()).toBe("/usr/lib/netfleet-node/bin/node");
    expect(stat("/etc/netfleet")).toBe("700 root root directory");
    expect(stat("/etc/netfleet/serve.env")).toBe("644 root root regular file");
    expect(w.m1.exec(["dpkg-query", "-W", "-f", "${Conffiles}", "netfleet"]).trim()).toMatch(/^\/etc\/netfleet\/serve\.env [0-9a-f]{32}$/);
    for (const u of ["netfleet-agent.service", "netfleet-serve.service"]) expect(stat(`/lib/systemd/system/${u}`)).toBe("644 root root regular file");
    // The system user of netfleet.sysusers: a system uid, home the state dir, no login shell.
    const [, , uid, , , home, shell] = w.m1.exec(["getent", "passwd", "netfleet"]).trim().split(":");
    expect(Number(uid)).toBeLessThan(1000);
    expect([home, shell]).toEqual([STATE, "/usr/sbin/nologin"]);
    expect(stat(STATE)).toBe("700 netfleet netfleet directory");
    // The CLIs run on the packaged Node (the machine's own /usr/bin/node is older: this host's).
    expect(w.m1.exec(["/usr/bin/netfleet", "--version"]).trim()).toMatch(/\d+\.\d+\.\d+/);
    expect(w.m1.exec(["/usr/bin/netfleet-agent", "--version"]).trim()).toMatch(/\d+\.\d+\.\d+/);
    expect(w.m1.run(["man", "-w", "netfleet"]).stdout.trim()).toBe("/usr/share/man/man1/netfleet.1.gz");
    for (const u of ["netfleet-agent.service", "netfleet-serve.service"]) expect(w.m1.exec(["systemctl", "is-enabled", u]).trim(), u).toBe("enabled");
    expect(w.m1.show("netfleet-serve.service", ["ActiveState"]).ActiveState).toBe("inactive");
    // The agent was started (its condition was checked) and skipped: ConditionPathExists=/etc/netfleet/agent.json failed.
    const agent = w.m1.show("netfleet-agent.service", ["ActiveState", "ConditionResult", "ConditionTimestampMonotonic"]);
    expect(agent).toMatchObject({ ActiveState: "inactive", ConditionResult: "no" });
    expect(Number(agent.ConditionTimestampMonotonic)).toBeGreaterThan(0);
    expect(Number(w.m1.show("netfleet-serve.service", ["ConditionTimestampMonotonic"]).ConditionTimestampMonotonic)).toBe(0);
  }, 400_000);

  it("configured as the README says: serve runs as netfleet; the agent, given a host token, enrolls and connects; a rollout reaches it and m1 holds what it applied", async () => {
    w.m1.exec(["install", "-D", "-m", "0644", `${SRC}/test/systemd/debs-site/site.yaml`, `${SITE}/site.yaml`]);
    w.m1.exec(["sed", "-i", "-e", `s|^NETFLEET_SITE=.*|NETFLEET_SITE=${SITE}|`, "-e", `s|^NETFLEET_SERVE_OPTIONS=.*|NETFLEET_SERVE_OPTIONS=--listen ${M1_ADDRESS}:${NATS_PORT}|`, "/etc/netfleet/serve.env"]);
    w.m1.exec(["systemctl", "start", "netfleet-serve.service"], 60_000);
    await eventually("netfleet serve ready in its journal", 90_000, () => journal(w.m1, "netfleet-serve.service").some((e) => e.event === "ready"));
    const serve = w.m1.show("netfleet-serve.service", ["ActiveState", "MainPID", "User"]);
    expect(serve).toMatchObject({ ActiveState: "active", User: "netfleet" });
    const uid = w.m1.exec(["id", "-u", "netfleet"]).trim();
    expect(procStatus(w.m1.hostPid(Number(serve.MainPID))!).Uid!.split(/\s+/)[0]).toBe(uid);
    // Its command line is the packaged Node running the packaged CLI.
    expect(w.m1.exec(["cat", `/proc/${serve.MainPID}/cmdline`]).split("\0").slice(0, 2 + CONTROLLER_NODE_FLAGS.length)).toEqual(["/usr/lib/netfleet-node/bin/node", ...CONTROLLER_NODE_FLAGS, "/usr/lib/netfleet/packages/controller/bin/netfleet.mjs"]);

    const token = asNetfleet(["hosts", "token", "m1", SITE, "--state-dir", STATE]);
    expect(token.code, token.stderr).toBe(0);
    writeFileSync(w.m1.file("/etc/netfleet/agent.json"), JSON.stringify({ site: "sdeb", nats: [`nats://${M1_ADDRESS}:${NATS_PORT}`], token: token.stdout.trim(), name: "m1" }) + "\n", { mode: 0o600 });
    w.m1.exec(["systemctl", "start", "netfleet-agent.service"], 150_000);
    expect(w.m1.show("netfleet-agent.service", ["ActiveState", "SubState"])).toEqual({ ActiveState: "active", SubState: "running" });
    await eventually("the agent enrolled and connected", 90_000, () => {
      const events = journal(w.m1, "netfleet-agent.service").map((e) => e.event);
      return events.includes("enrolled") && events.includes("connected");
    });

    // A VM host's libvirtd: this host has libvirt-daemon (the binary) but not libvirt-daemon-system, which would
    // make the account its QEMU driver wants ("Failed to parse user 'libvirt-qemu'" otherwise) and the units.
    w.m1.exec(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "libvirt-qemu"]);
    w.m1.exec(["systemd-run", "--unit=sdeb-libvirtd", "/usr/sbin/libvirtd"]);
    await eventually("libvirtd answers", 60_000, () => w.m1.run(["virsh", "-c", "qemu:///system", "version"], 15_000).code === 0);

    const t = performance.now();
    const rollout = asNetfleet(["rollout", SITE, "--state-dir", STATE, "--limit", "m1", "--yes"], 300_000);
    const ms = Math.round(performance.now() - t);
    expect(rollout.code, `${rollout.stdout}\n${rollout.stderr}`).toBe(0);
    // What the assignment holds for m1 (a VM host), now on the machine, made by the packaged agent under its unit.
    for (const br of ["br-uplink", "br-service"]) {
      expect(w.m1.run(["ovs-vsctl", "br-exists", br]).code, br).toBe(0);
      expect(w.m1.exec(["ovs-vsctl", "get", "Bridge", br, "external_ids:netfleet-owner"]).trim()).toBe("sdeb");
    }
    expect(w.m1.exec(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "br-service"])).toMatch(/cookie=0x4e46/);
    expect(w.m1.exec(["virsh", "-c", "qemu:///system", "net-list", "--name"]).split("\n").map((l) => l.trim())).toContain("service");
    const status = asNetfleet(["status", SITE, "--state-dir", STATE, "--json"]);
    const m1 = (JSON.parse(status.stdout) as { hosts: { host?: string; name?: string; desired: { revision: number } | null; applied: { revision: number } | null }[] }).hosts.find((h) => (h.host ?? h.name) === "m1");
    expect(m1?.applied?.revision, status.stdout).toBeTruthy();
    expect(m1?.applied?.revision).toBe(m1?.desired?.revision);
    console.log(`rollout to the packaged agent: ${ms} ms; revision ${m1?.applied?.revision}`);
  }, 600_000);

  it("dpkg -r: services stopped, programs and units gone; state, serve.env, agent.json, the user, the site and what the agent made stay", () => {
    w.m1.exec(["dpkg", "-r", "netfleet", "netfleet-agent"], 180_000);
    expect(dpkgStatus("netfleet")).toBe("rc");
    expect(dpkgStatus("netfleet-agent")).toBe("rc");
    expect(dpkgStatus("netfleet-node")).toBe("ii");
    // (runuser's PAM session may leave netfleet a systemd --user: not ours to judge.)
    for (const unit of ["netfleet-serve.service", "netfleet-agent.service"]) expect(w.m1.show(unit, ["ActiveState"]).ActiveState, unit).not.toBe("active");
    expect(w.m1.run(["pgrep", "-x", "nats-server"]).code).not.toBe(0);
    expect(w.m1.run(["pgrep", "-f", "/usr/lib/netfleet/packages"]).code).not.toBe(0);
    expect(w.m1.run(["pgrep", "-f", "/opt/netfleet/agent.mjs"]).code).not.toBe(0);
    for (const gone of ["/usr/bin/netfleet", "/usr/bin/netfleet-agent", "/usr/lib/netfleet", "/opt/netfleet", "/lib/systemd/system/netfleet-serve.service", "/lib/systemd/system/netfleet-agent.service"]) expect(present(gone), gone).toBe(false);
    for (const kept of [`${STATE}/secrets.json`, "/var/lib/netfleet-agent", "/etc/netfleet/serve.env", "/etc/netfleet/agent.json", `${SITE}/site.yaml`]) expect(present(kept), kept).toBe(true);
    expect(w.m1.exec(["grep", "^NETFLEET_SITE=", "/etc/netfleet/serve.env"]).trim()).toBe(`NETFLEET_SITE=${SITE}`);
    expect(w.m1.run(["getent", "passwd", "netfleet"]).code).toBe(0);
    // Stopping the agent leaves the host as it is.
    for (const br of ["br-uplink", "br-service"]) expect(w.m1.run(["ovs-vsctl", "br-exists", br]).code, br).toBe(0);
  }, 300_000);

  it("dpkg -P: the state dirs and serve.env go; agent.json (the admin's), the user and the site stay; no unit enabled or masked is left", () => {
    w.m1.exec(["dpkg", "-P", "netfleet", "netfleet-agent", "netfleet-node"], 180_000);
    for (const p of ["netfleet", "netfleet-agent", "netfleet-node"]) expect(dpkgStatus(p), p).toMatch(/^(un|pn)|^$/);
    for (const gone of [STATE, "/var/lib/netfleet-agent", "/run/netfleet", "/etc/netfleet/serve.env", "/usr/lib/netfleet-node", "/usr/lib/sysusers.d/netfleet.conf"]) expect(present(gone), gone).toBe(false);
    for (const kept of ["/etc/netfleet/agent.json", `${SITE}/site.yaml`]) expect(present(kept), kept).toBe(true);
    expect(w.m1.run(["getent", "passwd", "netfleet"]).code).toBe(0);
    const links = w.m1.exec(["find", "/etc/systemd/system", "-name", "netfleet-*"]).trim();
    expect(links).toBe("");
    expect(w.m1.exec(["find", "/var/lib/systemd/deb-systemd-helper-enabled", "-name", "netfleet-*"], 30_000, true).trim()).toBe("");
  }, 300_000);
});

describe("reinstalled after the purge, as the site's backend", () => {
  it("dpkg -i again: fresh state, a new host token; the rollout makes m1 the backend: its dnsmasq runs under the unit as its user, and what m1 had as a VM host is pruned", async () => {
    execFileSync("ip", ["-n", CTL_NS, "link", "add", "v-wan", "type", "veth", "peer", "name", "wan0", "netns", M1_NS]);
    execFileSync("ip", ["-n", M1_NS, "link", "set", "wan0", "up"]);
    w.m1.exec(["dpkg", "-i", debPath("netfleet-node"), debPath("netfleet-agent"), debPath("netfleet")], 300_000);
    for (const p of ["netfleet-node", "netfleet-agent", "netfleet"]) expect(dpkgStatus(p), p).toBe("ii");
    // The conffile came back as shipped; the state is new (purged): new secrets, so a new host token.
    expect(w.m1.exec(["grep", "^NETFLEET_SITE=", "/etc/netfleet/serve.env"]).trim()).toBe("NETFLEET_SITE=/srv/netfleet/site");
    w.m1.exec(["install", "-m", "0644", `${SRC}/test/systemd/debs-site-backend/site.yaml`, `${SITE}/site.yaml`]);
    w.m1.exec(["sed", "-i", "-e", `s|^NETFLEET_SERVE_OPTIONS=.*|NETFLEET_SERVE_OPTIONS=--listen ${M1_ADDRESS}:${NATS_PORT}|`, "/etc/netfleet/serve.env"]);
    w.m1.exec(["systemctl", "start", "netfleet-serve.service"], 60_000);
    await eventually("netfleet serve ready again", 90_000, () => journal(w.m1, "netfleet-serve.service").filter((e) => e.event === "ready").length >= 2);
    const token = asNetfleet(["hosts", "token", "m1", SITE, "--state-dir", STATE]);
    expect(token.code, token.stderr).toBe(0);
    writeFileSync(w.m1.file("/etc/netfleet/agent.json"), JSON.stringify({ site: "sdeb", nats: [`nats://${M1_ADDRESS}:${NATS_PORT}`], token: token.stdout.trim(), name: "m1" }) + "\n", { mode: 0o600 });
    const connectedBefore = journal(w.m1, "netfleet-agent.service").filter((e) => e.event === "connected").length;
    w.m1.exec(["systemctl", "restart", "netfleet-agent.service"], 150_000);
    await eventually("the agent enrolled again and connected", 90_000, () => journal(w.m1, "netfleet-agent.service").filter((e) => e.event === "connected").length > connectedBefore);
    const rollout = asNetfleet(["rollout", SITE, "--state-dir", STATE, "--limit", "m1", "--yes"], 300_000);
    expect(rollout.code, `${rollout.stdout}\n${rollout.stderr}`).toBe(0);
    // dnsmasq, started by the agent under its unit (no CAP_DAC_OVERRIDE), runs as its user with its lease file.
    expect(w.m1.exec(["ps", "-o", "user=", "-C", "dnsmasq"]).trim()).toBe("dnsmasq");
    expect(stat("/var/lib/netfleet-agent/dnsmasq/service.leases", "%U %G %a")).toBe("dnsmasq root 660");
    expect(w.m1.exec(["nft", "list", "table", "inet", "netfleet"])).toMatch(/table inet netfleet/);
    expect(w.m1.exec(["ip", "-4", "-o", "address", "show", "dev", "gw-service"])).toMatch(/10\.83\.0\.1\/24/);
    // The VM host's own pieces, ours and no longer wanted, are gone.
    expect(w.m1.run(["ovs-vsctl", "br-exists", "br-service"]).code).not.toBe(0);
    expect(w.m1.exec(["virsh", "-c", "qemu:///system", "net-list", "--all", "--name"]).split("\n").map((l) => l.trim())).not.toContain("service");
    console.log(`reinstall after purge, backend rollout: ${rollout.stdout.trim().split("\n").at(-1)}`);
  }, 600_000);
});

describe("lintian", () => {
  const has = spawnSync("lintian", ["--version"], { encoding: "utf8" }).status === 0;
  it.skipIf(!has)("finds no error and no warning in any of the three (overrides carry their reasons)", () => {
    for (const { file } of files) {
      const t = performance.now();
      const r = spawnSync("lintian", ["--tag-display-limit", "0", file], { encoding: "utf8", timeout: 900_000 });
      const tags = `${r.stdout}${r.stderr}`.split("\n").filter((l) => /^[EW]: /.test(l));
      expect(tags, file).toEqual([]);
      console.log(`lintian ${file.split("/").at(-1)}: clean, ${Math.round(performance.now() - t)} ms`);
    }
  }, 1_800_000);
});
