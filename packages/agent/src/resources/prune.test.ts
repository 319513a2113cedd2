import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { PruneSpec } from "@netfleet/shared";
import { reconcile } from "../engine.ts";
import { RecordingRunner, type ScriptedReply } from "../exec/recording-runner.ts";
import { displayCommand, ExecError } from "../exec/runner.ts";
import { Toolbox } from "../tools.ts";
import { daemonNotRunning, prune } from "./prune.ts";
import { dnsmasqFiles } from "./dnsmasq.ts";
import { fixture, fixtureContext as ctx, noFiles } from "./fixtures.ts";
import { parseLinks } from "./ip-json.ts";
import { ovsObserveArgv, parseOvsState } from "./ovsdb.ts";
import { sysctl } from "./sysctl.ts";
import type { HostAccess, ObserveContext } from "./types.ts";

const keep: PruneSpec = {
  kind: "prune",
  name: "host",
  keep: { links: ["bond0", "bond0.1081", "bond0.1082", "bond0.1083"], ovsBridges: ["br-secure", "br-service"], libvirtNetworks: ["secure"], dnsmasq: [], nftTable: false },
};

describe("prune plan", () => {
  it("absent (netfleet plan): nothing of ours on a fresh host, nothing to remove", () => {
    const plan = prune.plan(keep, prune.absent(keep), ctx);
    expect(plan).toEqual(prune.plan(keep, { links: parseLinks(fixture("ip/empty-link.json")), ovs: parseOvsState(fixture("ovs/empty.json")), libvirt: [] }, ctx));
    expect(plan.commands).toEqual([]);
  });

  it("removes only what carries our mark and is no longer wanted", () => {
    const plan = prune.plan(
      keep,
      { links: parseLinks(fixture("ip/vmhost-drift-link.json")), ovs: parseOvsState(fixture("ovs/kernel-drift.json")), libvirt: [{ name: "old", active: true }] },
      ctx,
    );
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["virsh", "-q", "-c", "qemu:///system", "net-destroy", "old"],
      ["virsh", "-q", "-c", "qemu:///system", "net-undefine", "old"],
      ["ovs-vsctl", "--timeout=30", "--", "del-br", "br-old"],
      ["ip", "link", "del", "dev", "bond0.1099"],
    ]);
    // br-mgmt, eth9.50 and vnet0 are not ours: untouched.
    expect(JSON.stringify(plan.commands)).not.toMatch(/br-mgmt|eth9|vnet0/);
  });

  it("already converged → no commands", () => {
    const plan = prune.plan(
      keep,
      { links: parseLinks(fixture("ip/vmhost-converged-link.json")), ovs: parseOvsState(fixture("ovs/kernel-converged.json")), libvirt: [] },
      ctx,
    );
    expect(plan).toEqual({ changes: {}, commands: [] });
  });
});

describe("sysctl plan", () => {
  const spec = { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" } as const;
  it("already converged → no commands", () => {
    expect(sysctl.plan(spec, { value: fixture("ip/ip_forward.txt").trim() }, ctx)).toEqual({ changes: {}, commands: [] });
  });
  it("turns forwarding on", () => {
    expect(sysctl.plan(spec, { value: "0" }, ctx).commands.map((c) => c.argv)).toEqual([["sysctl", "-w", "net.ipv4.ip_forward=1"]]);
  });
  it("absent (netfleet plan): forwarding off, the kernel's default; the first apply turns it on", () => {
    expect(sysctl.plan(spec, sysctl.absent(spec), ctx)).toEqual(sysctl.plan(spec, { value: "0" }, ctx));
  });
});

/**
 * What ovs-vsctl and virsh print when their daemon does not run, captured
 * with the agent's own argv (__fixtures__/daemons/capture.sh).
 */
const failure = (name: string): ScriptedReply => ({
  exitCode: Number(fixture(`daemons/${name}.rc`).trim()),
  stderr: fixture(`daemons/${name}.stderr`),
});

/** No table at all, so no `inet netfleet` (`nft -j list ruleset` of real nft 1.0.6, __fixtures__/nft/capture-tables.sh). */
const NO_TABLE: ScriptedReply = { stdout: fixture("nft/tables-none.json") };

/** A host whose `ip link` shows `links` and whose OVS / libvirt / nft answer as given. */
function host(tools: Toolbox, links: string, ovs: ScriptedReply, virsh: ScriptedReply | { list: string }, nft: ScriptedReply | (() => ScriptedReply) = NO_TABLE) {
  const runner = new RecordingRunner()
    .reply(tools.ip("-details", "-json", "link", "show"), { stdout: fixture(links) })
    .reply(ovsObserveArgv({ owner: "fixture", tools }), ovs)
    // One read for both our table and the VXLAN filter tables (vxlan-interface-prune.ts); a listing
    // of `inet netfleet` alone is a ruleset holding only that table.
    .reply(["nft", "-j", "list", "ruleset"], nft);
  if ("list" in virsh) {
    runner
      .reply(tools.virsh("net-list", "--all"), { stdout: virsh.list })
      .reply(tools.virsh("net-dumpxml", "--inactive", "secure"), { stdout: fixture("libvirt/secure-inactive.xml") })
      .reply(tools.virsh("net-dumpxml", "--inactive", "datain"), { stdout: fixture("libvirt/lab-datain-inactive.xml") })
      .reply(tools.virsh("net-dumpxml", "--inactive", "service"), { stdout: fixture("libvirt/lab-service-inactive.xml") });
  } else {
    runner.reply(tools.virsh("net-list", "--all"), virsh);
  }
  return runner;
}

/** A host where libvirtd's default socket exists (Toolbox.libvirtSockets): virsh is asked. */
const libvirtSocket: HostAccess = { ...noFiles, listDir: async (path) => (path === "/var/run/libvirt" ? ["libvirt-sock"] : undefined) };

const backendKeep: PruneSpec = {
  kind: "prune",
  name: "host",
  keep: { links: ["bond0", "bond0.1081", "bond0.1082", "bond0.1083"], ovsBridges: [], libvirtNetworks: [], dnsmasq: [], nftTable: false },
};

describe("prune on a host without ovsdb-server or libvirtd (real error text)", () => {
  const cases: [string, Toolbox, string, string][] = [
    ["default sockets missing", new Toolbox(), "ovs-default-no-socket", "virsh-default-no-socket"],
    ["--ovs-db / --libvirt-uri sockets missing", new Toolbox({ ovsDb: "/nonexistent", libvirtUri: "qemu:///system?socket=/nonexistent" }), "ovs-no-socket", "virsh-no-socket"],
    ["stale sockets, nobody listening", new Toolbox({ ovsDb: "/tmp/nfdaemons/stale.sock", libvirtUri: "qemu:///system?socket=/tmp/nfdaemons/stale.sock" }), "ovs-stale-socket", "virsh-stale-socket"],
  ];

  it.each(cases)("%s: holds nothing of ours there → in desired state, no commands", async (_, tools, ovs, virsh) => {
    const runner = host(tools, "ip/backend-converged-link.json", failure(ovs), failure(virsh));
    const [r] = await reconcile([backendKeep], { runner, tools, owner: "fixture" });
    expect(r, r?.error).toMatchObject({ result: true, changed: false, commands: [] });
    expect(r?.comment).toBe("in desired state (no libvirtd, no ovsdb-server running on this host: nothing of ours there)");
    expect(runner.mutatingCalls).toEqual([]);
  });

  it("still removes our stale kernel links when neither daemon runs", async () => {
    const tools = new Toolbox();
    const runner = host(tools, "ip/vmhost-drift-link.json", failure("ovs-default-no-socket"), failure("virsh-default-no-socket"));
    const plan = prune.plan(keep, await prune.observe(keep, observeCtx(runner, tools)), ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([["ip", "link", "del", "dev", "bond0.1099"]]);
    expect(plan.comment).toBeUndefined();
  });

  it("only the daemon that is missing counts as empty: an owned libvirt network is still removed without OVS; another site's are not", async () => {
    const tools = new Toolbox();
    // datain and service carry the mark of site "lab", secure that of "fixture"
    const runner = host(tools, "ip/backend-converged-link.json", failure("ovs-default-no-socket"), { list: fixture("libvirt/net-list-all-lab.txt") });
    const observed = await prune.observe(backendKeep, observeCtx(runner, tools, libvirtSocket));
    expect(observed.absent).toEqual(["ovsdb-server"]);
    expect(prune.plan(backendKeep, observed, ctx).commands.map((c) => c.argv.slice(4))).toEqual([
      ["net-destroy", "secure"],
      ["net-undefine", "secure"],
    ]);
    // state from the one net-list: no net-info per network
    expect(runner.calls.filter((c) => c.argv.includes("net-info"))).toEqual([]);
  });

  it.each([
    ["ovsdb-server refuses us (permission denied)", "ovs-permission-denied", "virsh-default-no-socket", /database connection failed \(Permission denied\)/],
    ["ovsdb-server does not answer (timeout)", "ovs-timeout", "virsh-default-no-socket", /exited 142.*Alarm clock/],
    ["libvirtd refuses us (permission denied)", "ovs-default-no-socket", "virsh-permission-denied", /Failed to connect socket to '\/tmp\/nfdaemons\/root-only.sock': Permission denied/],
  ])("any other error stays an error: %s", async (_, ovs, virsh, message) => {
    const tools = new Toolbox();
    const runner = host(tools, "ip/backend-converged-link.json", failure(ovs), failure(virsh));
    const [r] = await reconcile([backendKeep], { runner, tools, owner: "fixture", host: libvirtSocket });
    expect(r).toMatchObject({ result: false, changed: false, comment: "ExecError" });
    expect(r?.error).toMatch(message);
    expect(runner.mutatingCalls).toEqual([]);
  });

  it("no libvirt socket at all: libvirtd counts as not running without starting virsh", async () => {
    const tools = new Toolbox();
    const runner = host(tools, "ip/backend-converged-link.json", failure("ovs-default-no-socket"), failure("virsh-default-no-socket"));
    const observed = await prune.observe(backendKeep, observeCtx(runner, tools));
    expect(observed.absent).toEqual(["libvirtd", "ovsdb-server"]);
    expect(runner.calls.filter((c) => c.argv[0] === "virsh")).toEqual([]);
    // with the socket there, virsh is asked (and its answer decides)
    const asked = host(tools, "ip/backend-converged-link.json", failure("ovs-default-no-socket"), failure("virsh-default-no-socket"));
    expect((await prune.observe(backendKeep, observeCtx(asked, tools, libvirtSocket))).absent).toEqual(["libvirtd", "ovsdb-server"]);
    expect(asked.calls.filter((c) => c.argv[0] === "virsh").map((c) => c.argv.slice(4))).toEqual([["net-list", "--all"]]);
  });

  it("daemonNotRunning matches exactly the not-running text of the right tool", () => {
    const err = (argv0: string, name: string) => new ExecError([argv0, "x"], Number(fixture(`daemons/${name}.rc`).trim()), fixture(`daemons/${name}.stderr`));
    for (const name of ["ovs-default-no-socket", "ovs-no-socket", "ovs-stale-socket"]) {
      expect(daemonNotRunning("ovsdb-server", err("ovs-vsctl", name)), name).toBe(true);
      expect(daemonNotRunning("libvirtd", err("ovs-vsctl", name)), name).toBe(false);
    }
    for (const name of ["virsh-default-no-socket", "virsh-no-socket", "virsh-stale-socket"]) {
      expect(daemonNotRunning("libvirtd", err("virsh", name)), name).toBe(true);
      expect(daemonNotRunning("ovsdb-server", err("virsh", name)), name).toBe(false);
    }
    expect(daemonNotRunning("ovsdb-server", err("ovs-vsctl", "ovs-permission-denied"))).toBe(false);
    expect(daemonNotRunning("ovsdb-server", err("ovs-vsctl", "ovs-timeout"))).toBe(false);
    expect(daemonNotRunning("libvirtd", err("virsh", "virsh-permission-denied"))).toBe(false);
    // the missing-socket text from some other command than the tool itself, or no ExecError at all
    expect(daemonNotRunning("ovsdb-server", err("sh", "ovs-no-socket"))).toBe(false);
    expect(daemonNotRunning("libvirtd", new Error(fixture("daemons/virsh-no-socket.stderr")))).toBe(false);
    // the tool not installed: execa cannot spawn it (exit 127) — not the daemon's answer
    expect(daemonNotRunning("libvirtd", new ExecError(["virsh", "net-list"], 127, "Error: spawn virsh ENOENT"))).toBe(false);
  });
});

function observeCtx(runner: RecordingRunner, tools: Toolbox, host: HostAccess = noFiles): ObserveContext {
  return {
    owner: "fixture",
    tools,
    read: (argv: string[], options?: { allowFailure?: boolean }) => runner.run({ argv, mutating: false }, options),
    readFile: (path) => host.readFile(path),
    listDir: (path) => host.listDir(path),
    processArgv: (pid) => host.processArgv(pid),
  };
}

/**
 * The gateway role's leftovers, observed through a HostAccess that serves
 * files and /proc as captured on a lab backend (__fixtures__/dnsmasq): its
 * agent's run dir holds the dnsmasq files of datain, secure and service.
 */
describe("prune of the gateway role (dnsmasq, nft table, libvirt XML files)", () => {
  const runDir = "/tmp/nfy-lab/hosts/backend/agent";
  const tools = new Toolbox({ runDir });
  const dir = `${runDir}/dnsmasq`;
  const lab = { owner: "lab", tools };
  const livePid = Number(fixture("dnsmasq/lab-secure.pid").trim());

  /** The lab backend's files; `conf(net)` is what each config holds (secure's is the captured one). */
  function labHost(options: { conf?: (net: string) => string | undefined; argv?: string; extra?: Record<string, string> } = {}): HostAccess {
    const files = new Map<string, string>();
    for (const name of fixture("dnsmasq/lab-backend-ls.txt").split("\n").filter(Boolean)) {
      const net = name.split(".")[0]!;
      const content = name.endsWith(".conf")
        ? (options.conf ?? (() => undefined))(net) ?? fixture("dnsmasq/lab-secure.conf").replace(/network=secure/, `network=${net}`).replaceAll("/secure.", `/${net}.`)
        : name.endsWith(".pid") && net === "secure" ? fixture("dnsmasq/lab-secure.pid") : "";
      files.set(`${dir}/${name}`, content);
    }
    for (const [path, content] of Object.entries(options.extra ?? {})) files.set(path, content);
    return {
      readFile: async (path) => files.get(path),
      listDir: async (path) => {
        const names = [...files.keys()].filter((p) => p.startsWith(`${path}/`)).map((p) => p.slice(path.length + 1));
        return names.length ? names.sort() : undefined;
      },
      processArgv: async (pid) => (pid === livePid ? fixture(`dnsmasq/${options.argv ?? "lab-secure.cmdline"}`).split("\0").filter(Boolean) : undefined),
    };
  }

  const spec = (keep: Partial<PruneSpec["keep"]>): PruneSpec => ({
    kind: "prune",
    name: "host",
    keep: { links: ["bond0", "bond0.1081", "bond0.1082", "bond0.1083"], ovsBridges: [], libvirtNetworks: [], dnsmasq: ["datain", "secure", "service"], nftTable: true, ...keep },
  });
  const runner = (nft: ScriptedReply | (() => ScriptedReply) = NO_TABLE) => host(tools, "ip/backend-converged-link.json", failure("ovs-default-no-socket"), failure("virsh-default-no-socket"), nft);

  it("the backend as it is (every network, gateway role) → no commands", async () => {
    const s = spec({});
    const observed = await prune.observe(s, { ...observeCtx(runner({ stdout: fixture("nft/lab-backend-modified.json") }), tools, labHost()), owner: "lab" });
    expect(prune.plan(s, observed, lab).commands).toEqual([]);
  });

  it("a network removed: its dnsmasq (only the pid running our --conf-file) is stopped, then its files go, the config last", async () => {
    const s = spec({ dnsmasq: ["datain", "service"] });
    const observed = await prune.observe(s, { ...observeCtx(runner(), tools, labHost()), owner: "lab" });
    const plan = prune.plan(s, observed, lab);
    expect(plan.changes).toEqual({ "dnsmasq secure": { old: `pid ${livePid}`, new: null } });
    expect(plan.commands.map((c) => c.argv)).toEqual([
      ["kill", "-TERM", String(livePid)],
      ["wait-exit", String(livePid)],
      ...["hosts", "leases", "log", "pid", "conf"].map((ext) => ["remove", `${dir}/secure.${ext}`]),
    ]);
    expect(plan.commands.map(displayCommand).slice(1, 3)).toEqual([`# wait for pid ${livePid} to exit`, `# remove ${dir}/secure.hosts`]);
  });

  it("a pid file whose pid now runs something else: nothing is killed, the files still go", async () => {
    const s = spec({ dnsmasq: ["datain", "service"] });
    const observed = await prune.observe(s, { ...observeCtx(runner(), tools, labHost({ argv: "lab-ovsdb.cmdline" })), owner: "lab" });
    const argv = prune.plan(s, observed, lab).commands.map((c) => c.argv[0]);
    expect(argv).toEqual(["remove", "remove", "remove", "remove", "remove"]);
  });

  it("a dnsmasq config without our mark (or another site's, or another network's) is never touched", async () => {
    const foreign = (net: string) =>
      net === "secure" ? "# generated by hand\ninterface=gw-secure\n" : net === "datain" ? fixture("dnsmasq/lab-secure.conf").replace("netfleet-owner=lab", "netfleet-owner=other") : fixture("dnsmasq/lab-secure.conf");
    const s = spec({ dnsmasq: [] });
    const observed = await prune.observe(s, { ...observeCtx(runner(), tools, labHost({ conf: foreign })), owner: "lab" });
    // secure: no mark; datain: site "other"; service: the file says network=secure
    expect(observed.dnsmasq).toBeUndefined();
    expect(prune.plan(s, observed, lab).commands).toEqual([]);
  });

  it("the gateway role gone: the table inet netfleet is deleted when it carries our mark, and every dnsmasq of ours is stopped", async () => {
    const s = spec({ dnsmasq: [], nftTable: false });
    const observed = await prune.observe(s, { ...observeCtx(runner({ stdout: fixture("nft/table-ours.json") }), tools, labHost()), owner: "lab" });
    expect(observed.nftTable).toBe(true);
    const plan = prune.plan(s, observed, lab);
    expect(Object.keys(plan.changes)).toEqual(["dnsmasq datain", "dnsmasq secure", "dnsmasq service", "nft-table inet netfleet"]);
    expect(plan.commands.at(-1)!.argv).toEqual(["nft", "delete", "table", "inet", "netfleet"]);
    expect(plan.commands.filter((c) => c.argv[0] === "kill").map((c) => c.argv[2])).toEqual([String(livePid)]);
    // the full table of a lab backend reads as ours too
    const full = await prune.observe(s, { ...observeCtx(runner({ stdout: fixture("nft/lab-backend-modified.json") }), tools, labHost()), owner: "lab" });
    expect(full.nftTable).toBe(true);
  });

  it("a table inet netfleet without our mark is never touched, nor is a missing one an error", async () => {
    const s = spec({ nftTable: false });
    for (const reply of [{ stdout: fixture("nft/table-foreign.json") }, NO_TABLE]) {
      const observed = await prune.observe(s, { ...observeCtx(runner(reply), tools, labHost()), owner: "lab" });
      expect(observed.nftTable).toBeUndefined();
      expect(prune.plan(s, observed, lab).commands).toEqual([]);
    }
  });

  it("kept (the gateway role stays): the table is not even read", async () => {
    const r = runner({ stdout: fixture("nft/table-ours.json") });
    await prune.observe(spec({}), { ...observeCtx(r, tools, labHost()), owner: "lab" });
    // Only the ruleset, for the VXLAN filter tables (vxlan-interface-prune.ts), is read.
    expect(r.calls.filter((c) => c.argv[0] === "nft").map((c) => c.argv.join(" "))).toEqual(["nft -j list ruleset"]);
  });

  it("nft not installed (a VM host): no table of ours", async () => {
    const s = spec({ nftTable: false });
    // what ExecaRunner throws when it cannot spawn the program
    const notInstalled = () => {
      throw new ExecError(["nft", "-j", "list", "ruleset"], 127, "spawn nft ENOENT");
    };
    const observed = await prune.observe(s, { ...observeCtx(runner(notInstalled), tools, labHost()), owner: "lab" });
    expect(observed.nftTable).toBeUndefined();
  });

  it("libvirt XML files we wrote go with their network; a file without our mark stays", async () => {
    const xml = fixture("libvirt/lab-datain-inactive.xml");
    const extra = {
      [`${runDir}/libvirt/datain.xml`]: xml,
      [`${runDir}/libvirt/secure.xml`]: xml.replaceAll("datain", "secure"),
      [`${runDir}/libvirt/legacy.xml`]: fixture("libvirt/legacy.xml"),
      [`${runDir}/libvirt/notes.txt`]: "not a network\n",
    };
    const s = spec({ libvirtNetworks: ["secure"] });
    const observed = await prune.observe(s, { ...observeCtx(runner(), tools, labHost({ extra })), owner: "lab" });
    expect(prune.plan(s, observed, lab).commands.map((c) => c.argv)).toEqual([["remove", `${runDir}/libvirt/datain.xml`]]);
  });
});

describe("prune through the engine: a real process and real files", () => {
  it("stops the dnsmasq running our config, removes its files, and a second pass runs nothing", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "nf-cleanup-"));
    const tools = new Toolbox({ runDir });
    const f = dnsmasqFiles(runDir, "old");
    // Something that looks like our dnsmasq in /proc: argv[0] "dnsmasq", our --conf-file.
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)", `--conf-file=${f.conf}`], { argv0: "dnsmasq", stdio: "ignore" });
    try {
      mkdirSync(f.dir, { recursive: true });
      mkdirSync(f.stateDir, { recursive: true });
      writeFileSync(f.conf, fixture("dnsmasq/lab-secure.conf").replace("netfleet-owner=lab network=secure", "netfleet-owner=fixture network=old"));
      for (const p of [f.hosts, f.leases, f.legacyLeases, f.log, `${f.log}.1`]) writeFileSync(p, "");
      writeFileSync(f.pid, `${child.pid}\n`);
      writeFileSync(join(f.dir, "kept.conf"), "# netfleet-owner=fixture network=kept; written by netfleet-agent, do not edit\n");
      writeFileSync(join(f.dir, "mine.conf"), "# an operator's own dnsmasq\n");
      const r = host(tools, "ip/backend-converged-link.json", failure("ovs-default-no-socket"), failure("virsh-default-no-socket")).reply(["kill", "-TERM", String(child.pid)], () => {
        child.kill("SIGTERM");
        return {};
      });
      const s: PruneSpec = { ...backendKeep, keep: { ...backendKeep.keep, dnsmasq: ["kept"], nftTable: false } };
      const [first] = await reconcile([s], { runner: r, tools, owner: "fixture" });
      expect(first, first?.error).toMatchObject({ result: true, changed: true });
      expect(child.exitCode !== null || child.signalCode === "SIGTERM").toBe(true);
      expect(readdirSync(f.dir).sort()).toEqual(["kept.conf", "mine.conf"]);
      expect(readdirSync(f.stateDir)).toEqual([]);
      const [second] = await reconcile([s], { runner: r, tools, owner: "fixture" });
      expect(second).toMatchObject({ result: true, changed: false, commands: [] });
    } finally {
      child.kill("SIGKILL");
      rmSync(runDir, { recursive: true, force: true });
    }
  });
});
