/**
 * The systemd suite: a machine whose PID 1 is systemd (machine.ts, world.ts),
 * `netfleet serve` there under packaging/systemd/netfleet-serve.service, and
 * `netfleet bootstrap` (the real CLI, over SSH) taking its systemd path:
 * unit installed, daemon-reload, enabled, started; the agent enrolls with
 * that serve. Then what the units promise, read where it takes effect: the
 * kernel's view of the processes (/proc/PID/status: uid, capability bounding
 * set, no_new_privs, seccomp), the machine's disk, and the agent's own
 * commands run under the unit's settings (what must work does, what must be
 * refused is, and nothing of it landed). Restart and stop through systemctl.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REMOTE, renderUnit } from "../../packages/controller/src/bootstrap/layout.ts";
import { SRC, machineSupport } from "./machine.ts";
import { M1_ADDRESS, NATS_PORT, PACKAGING, buildWorld, destroyWorld, eventually, journal, procStatus, runBootstrap, writeToken, type World } from "./world.ts";
import { join } from "node:path";

let w: World;
/** The agent bundle's checksum the first bootstrap installed. */
let firstBundle = "";
const t0 = performance.now();

/** Capability numbers (linux/capability.h) of the names a unit lists. */
const CAP_BITS: Record<string, number> = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7,
  CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9, CAP_NET_BIND_SERVICE: 10, CAP_NET_BROADCAST: 11, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15, CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17, CAP_SYS_CHROOT: 18, CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23, CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25, CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27,
};
const capMask = (names: string[]) => names.reduce((m, n) => m | (1n << BigInt(CAP_BITS[n]!)), 0n);
const capNames = (hex: string) => Object.entries(CAP_BITS).filter(([, b]) => (BigInt(`0x${hex}`) >> BigInt(b)) & 1n).map(([n]) => n);

/** The [Service] settings of a unit's text, in order, as `Key=Value` strings. */
function serviceSettings(unit: string): string[] {
  const section = /^\[Service\]\n([\s\S]*?)(?=^\[)/m.exec(unit)?.[1] ?? "";
  return section.split("\n").filter((l) => /^[A-Z][A-Za-z]+=/.test(l));
}
/** What a transient unit needs to run a command as the agent's unit would: its sandbox and privilege settings. */
const LIFECYCLE = /^(Type|NotifyAccess|TimeoutStartSec|ExecStart|KillMode|KillSignal|TimeoutStopSec|Restart|RestartSec)=/;

const agentUnit = () => readFileSync(w.m1.file(REMOTE.unit), "utf8");
const mainPid = (unit: string) => Number(w.m1.show(unit, ["MainPID"]).MainPID);

interface Probe {
  argv: string[];
  code: number;
  out: string;
}

/**
 * Runs each argv inside m1 the way the agent's unit runs its commands: one transient unit
 * (systemd-run) with the installed unit's sandbox and privilege settings, running a Node
 * process (probe.ts) that runs them in turn.
 */
function asAgent(list: string[][]): Probe[] {
  const props = serviceSettings(agentUnit()).filter((s) => !LIFECYCLE.test(s)).flatMap((s) => ["-p", s]);
  const r = w.m1.run(["systemd-run", "--quiet", "--wait", "--pipe", "--collect", ...props, "--", "/usr/local/bin/node", `${SRC}/test/systemd/probe.ts`, JSON.stringify(list)], 120_000);
  if (r.code !== 0) throw new Error(`probe under the agent's settings: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Probe[];
}

beforeAll(async () => {
  const support = machineSupport();
  if (!support.ok) throw new Error(`the systemd suite cannot boot a machine here: ${support.why} (scripts/setup.sh installs what it needs)`);
  w = await buildWorld();
  console.log(`machine m1 booted (systemd PID 1): ${w.m1.bootMs} ms`);
  w.m1.exec(["systemctl", "start", "netfleet-serve.service"]);
  await eventually("netfleet serve ready in its journal", 60_000, () => journal(w.m1, "netfleet-serve.service").some((e) => e.event === "ready"));
  writeToken(w, w.m1.exec(["runuser", "-u", "netfleet", "--", "/usr/local/bin/netfleet", "token", "--state-dir", "/var/lib/netfleet"]));
});

afterAll(async () => {
  await destroyWorld(w);
  console.log(`systemd suite: ${Math.round(performance.now() - t0)} ms in all`);
});

describe("netfleet serve under packaging/systemd/netfleet-serve.service", () => {
  it("runs as the netfleet user with no capability at all, no_new_privs and a syscall filter; so does its nats-server; its state dir is netfleet's, 0700", () => {
    const show = w.m1.show("netfleet-serve.service", ["ActiveState", "SubState", "MainPID", "User"]);
    expect(show).toMatchObject({ ActiveState: "active", SubState: "running", User: "netfleet" });
    const uid = w.m1.exec(["id", "-u", "netfleet"]).trim();
    const serve = w.m1.hostPid(Number(show.MainPID))!;
    expect(serve).toBeGreaterThan(0);
    const nats = Number(w.m1.exec(["pgrep", "-u", "netfleet", "-x", "nats-server"]).trim().split("\n")[0]);
    for (const pid of [serve, w.m1.hostPid(nats)!]) {
      const s = procStatus(pid);
      expect(s.Uid!.split(/\s+/)).toEqual([uid, uid, uid, uid]);
      expect(s.CapBnd).toBe("0000000000000000");
      expect(s.CapEff).toBe("0000000000000000");
      expect(s.NoNewPrivs).toBe("1");
      expect(s.Seccomp).toBe("2");
    }
    // The positive control of the same kind: it serves, on the site's address.
    expect(journal(w.m1, "netfleet-serve.service").find((e) => e.event === "ready")).toMatchObject({ nats: [`nats://${M1_ADDRESS}:${NATS_PORT}`] });
    const st = statSync(w.m1.file("/var/lib/netfleet"));
    expect(String(st.uid)).toBe(uid);
    expect(st.mode & 0o777).toBe(0o700);
  });
});

describe("bootstrap's systemd path on a machine where systemd is PID 1", () => {
  it("installs the unit, reloads, enables and starts the agent; the unit is packaging/systemd's; the agent enrolls with serve and, approved, connects", async () => {
    const r = await runBootstrap(w, ["--accept-new", "--json"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const doc = JSON.parse(r.stdout) as { bundle: { sha256: string }; hosts: { status: string; runtime: string; node: string; changes: string[] }[] };
    firstBundle = doc.bundle.sha256;
    const host = doc.hosts[0]!;
    expect(host).toMatchObject({ status: "changed", runtime: "systemd" });
    expect(host.changes).toEqual(expect.arrayContaining(["agent", "config", "unit", "daemon-reload", "enabled", "started"]));
    expect(agentUnit()).toBe(renderUnit(host.node));
    if (host.node === REMOTE.node) expect(agentUnit()).toBe(readFileSync(join(PACKAGING, "netfleet-agent.service"), "utf8"));
    expect(w.m1.exec(["systemctl", "is-enabled", REMOTE.unitName]).trim()).toBe("enabled");
    // Type=notify: `systemctl start` returned, so READY=1 came; MainPID is what systemd started (its parent is PID 1).
    const show = w.m1.show(REMOTE.unitName, ["ActiveState", "SubState", "MainPID", "NRestarts"]);
    expect(show).toMatchObject({ ActiveState: "active", SubState: "running", NRestarts: "0" });
    expect(procStatus(w.m1.hostPid(Number(show.MainPID))!).PPid).toBe(String(w.m1.leader));
    const agentLog = journal(w.m1, REMOTE.unitName);
    expect(agentLog.find((e) => e.event === "systemd-ready")).toMatchObject({ exitCode: 0 });
    const enroll = await eventually("serve logs m1's enrollment", 30_000, () => journal(w.m1, "netfleet-serve.service").find((e) => e.event === "enroll" && (e.host === "m1" || e.claimed === "m1")));
    // The operator approves its claim (as the service user, on the state dir): the agent, under its unit, gets its
    // NATS credentials, writes them to its state dir (read-only system around it) and connects with them.
    if (enroll.state !== "approved" && enroll.state !== "approving") {
      w.m1.exec(["runuser", "-u", "netfleet", "--", "/usr/local/bin/netfleet", "hosts", "approve", "m1", "--state-dir", "/var/lib/netfleet"], 60_000);
    }
    await eventually("the agent enrolled and connected with its own credentials", 60_000, () => {
      const events = journal(w.m1, REMOTE.unitName).map((e) => e.event);
      return events.includes("enrolled") && events.includes("connected");
    });
    const state = readdirSync(w.m1.file("/var/lib/netfleet-agent"));
    expect(state.length).toBeGreaterThan(0);
    console.log(`bootstrap (systemd path, Node shipped: ${host.node === REMOTE.node}): ${r.ms} ms; serve: enroll ${JSON.stringify(enroll.state)}; agent state dir: ${state.join(", ")}`);
  }, 300_000);

  it("the agent runs confined: exactly the unit's capabilities, no_new_privs, seccomp, / read-only with its own dirs writable", () => {
    const pid = w.m1.hostPid(mainPid(REMOTE.unitName))!;
    const s = procStatus(pid);
    const wanted = /^CapabilityBoundingSet=(.*)$/m.exec(agentUnit())![1]!.trim().split(/\s+/);
    expect(capNames(s.CapBnd!).sort()).toEqual([...wanted].sort());
    expect(BigInt(`0x${s.CapBnd}`)).toBe(capMask(wanted));
    for (const never of ["CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_DAC_OVERRIDE", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO"]) expect(capNames(s.CapEff!)).not.toContain(never);
    expect(s.Uid!.split(/\s+/)[0]).toBe("0");
    expect(s.NoNewPrivs).toBe("1");
    expect(s.Seccomp).toBe("2");
    // mountinfo(5) of the agent: field 5 the mount point, field 6 its options.
    const mounts = new Map(readFileSync(`/proc/${pid}/mountinfo`, "utf8").trim().split("\n").map((l) => { const f = l.split(" "); return [f[4]!, f[5]!] as const; }));
    const opts = (p: string) => (mounts.get(p) ?? "").split(",");
    expect(opts("/")).toContain("ro");
    for (const p of ["/usr", "/etc"]) if (mounts.has(p)) expect(opts(p)).toContain("ro");
    for (const p of ["/var/lib/netfleet-agent", "/run/netfleet", REMOTE.dir, "/proc/sys/net"]) expect(opts(p), p).toContain("rw");
  });

  it("under the unit's settings the agent's commands work (ip, nft, ovs-vsctl, sysctl net.*, ping, dnsmasq on 53/67 as its user, tcpdump on nflog) and the rest is refused", () => {
    const fwd = w.m1.exec(["sysctl", "-n", "net.ipv4.conf.all.forwarding"]).trim();
    // What the agent does, each once, undone after.
    const allowed = [
      ["ip", "link", "add", "sysd-p0", "type", "veth", "peer", "name", "sysd-p1"],
      ["ip", "link", "del", "sysd-p0"],
      ["nft", "add", "table", "inet", "sysdprobe"],
      ["nft", "delete", "table", "inet", "sysdprobe"],
      ["sysctl", "-w", `net.ipv4.conf.all.forwarding=${fwd}`],
      ["ovs-vsctl", "--timeout=10", "add-br", "sysd-pbr"],
      ["ovs-vsctl", "br-exists", "sysd-pbr"],
      ["ovs-vsctl", "--timeout=10", "del-br", "sysd-pbr"],
      ["ping", "-c", "1", "-W", "2", "10.95.0.1"],
      ["dnsmasq", "--test"],
      // dnsmasq's real life as the agent leads it: binds 53 and 67, drops to its account, is signalled (CAP_KILL).
      ["dnsmasq", "--conf-file=/dev/null", "--interface=eth0", "--bind-interfaces", "--dhcp-range=10.95.0.100,10.95.0.150,1h", "--user=dnsmasq", "--pid-file=/run/netfleet/sysd-dnsmasq.pid", "--dhcp-leasefile=/var/lib/netfleet-agent/sysd-dnsmasq.leases"],
      ["pgrep", "-u", "dnsmasq", "-F", "/run/netfleet/sysd-dnsmasq.pid"],
      ["pkill", "-HUP", "-F", "/run/netfleet/sysd-dnsmasq.pid"],
      ["pkill", "-TERM", "-F", "/run/netfleet/sysd-dnsmasq.pid"],
      ["rm", "-f", "/run/netfleet/sysd-dnsmasq.pid", "/var/lib/netfleet-agent/sysd-dnsmasq.leases"],
      // The audit capture: tcpdump on an nflog group (netlink), stopped after 2 s by SIGINT (exit 0).
      ["timeout", "--preserve-status", "-s", "INT", "2", "tcpdump", "-i", "nflog:4095", "-U", "-s", "1024", "-w", "-"],
      ...["/var/lib/netfleet-agent/sysd-probe", "/run/netfleet/sysd-probe", `${REMOTE.dir}/sysd-probe`].flatMap((p) => [["touch", p], ["rm", p]]),
    ];
    // What it must not do, with the reason the unit gives.
    const refused: [string[], RegExp][] = [
      [["touch", "/usr/local/bin/sysd-probe"], /Read-only file system/],
      [["touch", "/etc/sysd-probe"], /Read-only file system/],
      [["touch", "/etc/systemd/system/sysd-probe.service"], /Read-only file system/],
      [["sysctl", "-w", "kernel.domainname=sysd-probe"], /permission denied|Read-only|not permitted/i],
      [["unshare", "--net", "true"], /Operation not permitted/],
      [["mount", "-t", "tmpfs", "sysd-probe", "/mnt"], /permission denied|not permitted|must be superuser/i],
      [["hostname", "sysd-probe"], /must be root|not permitted/i],
      // ProtectHome: /root is there for the machine (root's SSH key) and an empty, inaccessible dir for the agent.
      [["ls", "-A", "/root/.ssh"], /No such file or directory|Permission denied/],
    ];
    const results = asAgent([...allowed, ...refused.map(([argv]) => argv)]);
    results.slice(0, allowed.length).forEach((r) => expect(r.code, `${r.argv.join(" ")}: ${r.out}`).toBe(0));
    results.slice(allowed.length).forEach((r, i) => {
      expect(r.code, r.argv.join(" ")).not.toBe(0);
      expect(r.out, r.argv.join(" ")).toMatch(refused[i]![1]);
    });
    // Nothing of the refused landed; the machine itself still has what the agent could not see.
    for (const p of ["/usr/local/bin/sysd-probe", "/etc/sysd-probe", "/etc/systemd/system/sysd-probe.service"]) expect(w.m1.run(["test", "-e", p]).code, p).not.toBe(0);
    expect(w.m1.exec(["hostname"]).trim()).toBe("m1");
    expect(w.m1.exec(["sysctl", "-n", "kernel.domainname"]).trim()).not.toBe("sysd-probe");
    expect(w.m1.exec(["ls", "-A", "/root/.ssh"]).trim()).toContain("authorized_keys");
    expect(w.m1.run(["ovs-vsctl", "br-exists", "sysd-pbr"]).code).not.toBe(0);
  });

  it("a second bootstrap changes nothing and restarts nothing", async () => {
    const before = mainPid(REMOTE.unitName);
    const r = await runBootstrap(w, ["--json"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const doc = JSON.parse(r.stdout) as { bundle: { sha256: string }; hosts: { status: string; changes: string[] }[] };
    if (doc.bundle.sha256 === firstBundle) {
      expect(doc.hosts[0]).toMatchObject({ status: "unchanged", changes: [] });
      expect(mainPid(REMOTE.unitName)).toBe(before);
    } else {
      // The agent's sources changed between the two runs (a working tree being edited, never CI):
      // then the new bundle is installed and the unit restarted through systemd, nothing else.
      expect(doc.hosts[0]).toMatchObject({ status: "changed", changes: ["agent", "restarted"] });
      expect(w.m1.show(REMOTE.unitName, ["ActiveState"]).ActiveState).toBe("active");
      expect(mainPid(REMOTE.unitName)).not.toBe(before);
      console.log("second bootstrap: the agent's sources changed since the first; agent re-installed and restarted");
    }
    console.log(`second bootstrap: ${r.ms} ms`);
  }, 300_000);

  it("systemctl restart: a new MainPID, active again, the old process gone", () => {
    const before = mainPid(REMOTE.unitName);
    const beforeHost = w.m1.hostPid(before)!;
    const t = performance.now();
    w.m1.exec(["systemctl", "restart", REMOTE.unitName], 60_000);
    const ms = Math.round(performance.now() - t);
    const after = w.m1.show(REMOTE.unitName, ["ActiveState", "MainPID", "Result"]);
    expect(after).toMatchObject({ ActiveState: "active", Result: "success" });
    expect(Number(after.MainPID)).not.toBe(before);
    expect(w.m1.run(["kill", "-0", String(before)]).code).not.toBe(0);
    expect(() => procStatus(beforeHost)).toThrow();
    console.log(`systemctl restart: ${ms} ms`);
  });

  it("systemctl stop: inactive well within TimeoutStopSec (no SIGKILL), nothing left in the unit; also while serve is down", () => {
    const timeoutStop = Number(/^TimeoutStopSec=(\d+)$/m.exec(agentUnit())![1]) * 1000;
    const stop = (what: string) => {
      const t = performance.now();
      w.m1.exec(["systemctl", "stop", REMOTE.unitName], timeoutStop + 15_000);
      const ms = Math.round(performance.now() - t);
      const s = w.m1.show(REMOTE.unitName, ["ActiveState", "MainPID", "Result", "TasksCurrent"]);
      // Result=success: the main process exited on SIGTERM; "timeout" would mean systemd had to SIGKILL it.
      const tail = () => w.m1.exec(["journalctl", "--no-pager", "-o", "cat", "-n", "15", "-u", REMOTE.unitName], 15_000, true);
      expect(s, `${what}\n${tail()}`).toMatchObject({ ActiveState: "inactive", MainPID: "0", Result: "success" });
      expect(["0", "[not set]", ""]).toContain(s.TasksCurrent);
      expect(ms, what).toBeLessThan(timeoutStop);
      console.log(`systemctl stop (${what}): ${ms} ms`);
    };
    stop("serve up");
    w.m1.exec(["systemctl", "start", REMOTE.unitName], 60_000);
    w.m1.exec(["systemctl", "stop", "netfleet-serve.service"], 30_000);
    expect(w.m1.show("netfleet-serve.service", ["ActiveState", "Result"])).toEqual({ ActiveState: "inactive", Result: "success" });
    stop("serve down");
  });
});
