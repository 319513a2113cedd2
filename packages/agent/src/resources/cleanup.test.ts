import { describe, expect, it } from "vitest";
import type { OwnedCleanupSpec } from "@netfleet/shared";
import { reconcile } from "../engine.ts";
import { RecordingRunner, type ScriptedReply } from "../exec/recording-runner.ts";
import { ExecError } from "../exec/runner.ts";
import { Toolbox } from "../tools.ts";
import { daemonNotRunning, ownedCleanup } from "./cleanup.ts";
import { fixture, fixtureContext as ctx } from "./fixtures.ts";
import { parseLinks } from "./ip-link.ts";
import { ovsObserveArgv, parseOvsState } from "./ovs.ts";
import { sysctl } from "./sysctl.ts";

const keep: OwnedCleanupSpec = {
  kind: "owned-cleanup",
  name: "host",
  keep: { links: ["bond0", "bond0.1081", "bond0.1082", "bond0.1083"], ovsBridges: ["br-secure", "br-service"], libvirtNetworks: ["secure"] },
};

describe("owned-cleanup plan", () => {
  it("removes only what carries our mark and is no longer wanted", () => {
    const plan = ownedCleanup.plan(
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
    const plan = ownedCleanup.plan(
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
});

/**
 * What ovs-vsctl and virsh print when their daemon does not run, captured
 * with the agent's own argv (__fixtures__/daemons/capture.sh).
 */
const failure = (name: string): ScriptedReply => ({
  exitCode: Number(fixture(`daemons/${name}.rc`).trim()),
  stderr: fixture(`daemons/${name}.stderr`),
});

/** A host whose `ip link` shows `links` and whose OVS / libvirt answer as given. */
function host(tools: Toolbox, links: string, ovs: ScriptedReply, virsh: ScriptedReply | { names: string }) {
  const runner = new RecordingRunner()
    .reply(tools.ip("-details", "-json", "link", "show"), { stdout: fixture(links) })
    .reply(ovsObserveArgv({ owner: "fixture", tools }), ovs);
  if ("names" in virsh) {
    runner
      .reply(tools.virsh("net-list", "--all", "--name"), { stdout: virsh.names })
      .reply(tools.virsh("net-dumpxml", "--inactive", "secure"), { stdout: fixture("libvirt/secure-inactive.xml") })
      .reply(tools.virsh("net-info", "secure"), { stdout: fixture("libvirt/net-info-active.txt") });
  } else {
    runner.reply(tools.virsh("net-list", "--all", "--name"), virsh);
  }
  return runner;
}

const backendKeep: OwnedCleanupSpec = {
  kind: "owned-cleanup",
  name: "host",
  keep: { links: ["bond0", "bond0.1081", "bond0.1082", "bond0.1083"], ovsBridges: [], libvirtNetworks: [] },
};

describe("owned-cleanup on a host without ovsdb-server or libvirtd (real error text)", () => {
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
    const plan = ownedCleanup.plan(keep, await ownedCleanup.observe(keep, observeCtx(runner, tools)), ctx);
    expect(plan.commands.map((c) => c.argv)).toEqual([["ip", "link", "del", "dev", "bond0.1099"]]);
    expect(plan.comment).toBeUndefined();
  });

  it("only the daemon that is missing counts as empty: an owned libvirt network is still removed without OVS", async () => {
    const tools = new Toolbox();
    const runner = host(tools, "ip/backend-converged-link.json", failure("ovs-default-no-socket"), { names: fixture("libvirt/net-list-name.txt") });
    const observed = await ownedCleanup.observe(backendKeep, observeCtx(runner, tools));
    expect(observed.absent).toEqual(["ovsdb-server"]);
    expect(ownedCleanup.plan(backendKeep, observed, ctx).commands.map((c) => c.argv.slice(4))).toEqual([
      ["net-destroy", "secure"],
      ["net-undefine", "secure"],
    ]);
  });

  it.each([
    ["ovsdb-server refuses us (permission denied)", "ovs-permission-denied", "virsh-default-no-socket", /database connection failed \(Permission denied\)/],
    ["ovsdb-server does not answer (timeout)", "ovs-timeout", "virsh-default-no-socket", /exited 142.*Alarm clock/],
    ["libvirtd refuses us (permission denied)", "ovs-default-no-socket", "virsh-permission-denied", /Failed to connect socket to '\/tmp\/nfdaemons\/root-only.sock': Permission denied/],
  ])("any other error stays an error: %s", async (_, ovs, virsh, message) => {
    const tools = new Toolbox();
    const runner = host(tools, "ip/backend-converged-link.json", failure(ovs), failure(virsh));
    const [r] = await reconcile([backendKeep], { runner, tools, owner: "fixture" });
    expect(r).toMatchObject({ result: false, changed: false, comment: "ExecError" });
    expect(r?.error).toMatch(message);
    expect(runner.mutatingCalls).toEqual([]);
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

function observeCtx(runner: RecordingRunner, tools: Toolbox) {
  return {
    owner: "fixture",
    tools,
    read: (argv: string[], options?: { allowFailure?: boolean }) => runner.run({ argv, mutating: false }, options),
    readFile: async () => undefined,
    processArgv: async () => undefined,
  };
}
