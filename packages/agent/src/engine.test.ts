import { describe, expect, it } from "vitest";
import type { KernelBondSpec, ResourceSpec } from "@netfleet/shared";
import { planAbsent, reconcile } from "./engine.ts";
import { RecordingRunner } from "./exec/recording-runner.ts";
import { fixture } from "./resources/fixtures.ts";
import { ovsObserveArgv } from "./resources/ovsdb.ts";
import { Toolbox } from "./tools.ts";

const forward: ResourceSpec = { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" };
const addrs = (name: string, cidr: string): ResourceSpec => ({ kind: "interface-address", name, addresses: [cidr] });

/** A host whose forwarding flag flips when `sysctl -w` runs (unless `stuck`). */
function forwardingHost(options: { stuck?: boolean } = {}) {
  let value = "0";
  const runner = new RecordingRunner()
    .reply(["sysctl", "-n", "net.ipv4.ip_forward"], () => ({ stdout: `${value}\n` }))
    .reply(["sysctl", "-w", "net.ipv4.ip_forward=1"], () => {
      if (!options.stuck) value = "1";
      return { stdout: "net.ipv4.ip_forward = 1\n" };
    });
  return runner;
}

const opts = (runner: RecordingRunner, check = false) => ({ runner, tools: new Toolbox(), owner: "fixture", check });

describe("reconcile", () => {
  it("check mode reports what would change and runs no mutating command", async () => {
    const runner = forwardingHost();
    const [r] = await reconcile([forward], opts(runner, true));
    expect(r).toMatchObject({ id: "sysctl[net.ipv4.ip_forward]", result: null, changed: false, commands: ["sysctl -w net.ipv4.ip_forward=1"] });
    expect(runner.mutatingCalls).toEqual([]);
  });

  it("applies, observes again, and a second pass runs nothing mutating", async () => {
    const runner = forwardingHost();
    const [first] = await reconcile([forward], opts(runner));
    expect(first).toMatchObject({ result: true, changed: true, changes: { value: { old: "0", new: "1" } } });
    expect(runner.calls.map((c) => c.argv[1])).toEqual(["-n", "-w", "-n"]);
    const before = runner.mutatingCalls.length;
    const [second] = await reconcile([forward], opts(runner));
    expect(second).toMatchObject({ result: true, changed: false, commands: [] });
    expect(runner.mutatingCalls.length).toBe(before);
  });

  it("fails the resource when the host still differs after apply", async () => {
    const [r] = await reconcile([forward], opts(forwardingHost({ stuck: true })));
    expect(r).toMatchObject({ result: false, changed: true });
    expect(r!.comment).toBe("still differs after apply: value");
  });

  it("a failing command fails its resource with argv, exit code and stderr; the others still run", async () => {
    const runner = new RecordingRunner()
      .reply(["sysctl", "-n", "net.ipv4.ip_forward"], { stdout: "0\n" })
      .reply(["sysctl", "-w", "net.ipv4.ip_forward=1"], { exitCode: 255, stderr: "sysctl: permission denied on key \"net.ipv4.ip_forward\"\n" })
      .reply(["ip", "-details", "-json", "link", "show"], { stdout: fixture("ip/backend-converged-link.json") })
      .reply(["ip", "-json", "addr", "show"], { stdout: fixture("ip/backend-converged-addr.json") });
    const [bad, good] = await reconcile([forward, addrs("bond0.1081", "192.168.128.1/17")], opts(runner));
    expect(bad).toMatchObject({ result: false, comment: "ExecError" });
    expect(bad!.error).toBe('sysctl -w net.ipv4.ip_forward=1 exited 255: sysctl: permission denied on key "net.ipv4.ip_forward"');
    expect(good).toMatchObject({ result: true, changed: false });
  });

  it("output that does not parse fails the resource and changes nothing", async () => {
    const runner = new RecordingRunner().reply(["sysctl", "-n", "net.ipv4.ip_forward"], { stdout: "banana\n" });
    const [r] = await reconcile([forward], opts(runner));
    expect(r).toMatchObject({ result: false, comment: "ParseError" });
    expect(runner.mutatingCalls).toEqual([]);
  });

  it("resources of one kind share one read per pass", async () => {
    const runner = new RecordingRunner()
      .reply(["ip", "-details", "-json", "link", "show"], { stdout: fixture("ip/backend-converged-link.json") })
      .reply(["ip", "-json", "addr", "show"], { stdout: fixture("ip/backend-converged-addr.json") });
    const results = await reconcile(
      [addrs("bond0.1081", "192.168.128.1/17"), addrs("bond0.1082", "192.168.122.1/24"), addrs("bond0.1083", "192.168.123.1/24")],
      opts(runner),
    );
    expect(results.every((r) => r.result === true && !r.changed)).toBe(true);
    expect(runner.calls).toHaveLength(2);
  });
});

describe("reconcile: the management guard on plans that would take the path's link down", () => {
  // The captured state after a carries_management move (resources/__fixtures__/mgmt/moved-*):
  // bond0 (ours, active-backup, eth0+eth1) holds 10.98.0.11/24 and the default route via 10.98.0.254.
  const bond0: KernelBondSpec = { kind: "kernel-bond", name: "bond0", mode: "active-backup", members: ["eth0", "eth1"], miimon: 100, mtu: 1500, management: { address: "10.98.0.11/24" } };
  const movedHost = () =>
    new RecordingRunner()
      .reply(["ip", "-details", "-json", "link", "show"], { stdout: fixture("mgmt/moved-link.json") })
      .reply(["ip", "-json", "addr", "show"], { stdout: fixture("mgmt/moved-addr.json") })
      .reply(["ip", "-json", "route", "show"], { stdout: fixture("mgmt/moved-route.json") })
      .reply(["ip", "-batch", "-"], { stdout: "" })
      .reply(["ip", "link", "set", "dev", "bond0", "mtu", "9000"], { stdout: "" });

  it("a mode change of bond0 is refused, in check mode and in an apply, and runs nothing", async () => {
    for (const check of [true, false]) {
      const runner = movedHost();
      const [r] = await reconcile([{ ...bond0, mode: "802.3ad", lacpActive: true }], opts(runner, check));
      expect(r).toMatchObject({ id: "kernel-bond[bond0]", result: false, changed: false });
      expect(r!.comment).toMatch(/^taking bond0 down would cut this host off its controller: bond0 holds 10\.98\.0\.11\/24 and the default route via 10\.98\.0\.254; move the management address and routes off bond0 first, or make this change from the console/);
      expect(runner.mutatingCalls).toEqual([]);
    }
  });

  it("releasing a member of bond0 is refused and runs nothing", async () => {
    const runner = movedHost();
    const [r] = await reconcile([{ ...bond0, members: ["eth0"] }], opts(runner));
    expect(r).toMatchObject({ result: false, changed: false });
    expect(r!.comment).toMatch(/^releasing eth1 from bond0 would cut this host off its controller/);
    expect(runner.mutatingCalls).toEqual([]);
  });

  it("control: an MTU change of bond0 is applied", async () => {
    const runner = movedHost();
    const [r] = await reconcile([{ ...bond0, mtu: 9000 }], opts(runner));
    expect(r!.changed).toBe(true);
    expect(r!.comment).not.toMatch(/cut this host off/);
    expect(runner.mutatingCalls.map((c) => c.argv.join(" "))).toEqual(["ip link set dev bond0 mtu 9000"]);
  });

  it("fails closed: an apply whose plan takes a link down is refused when the routes cannot be read", async () => {
    const runner = new RecordingRunner()
      .reply(["ip", "-details", "-json", "link", "show"], { stdout: fixture("mgmt/moved-link.json") })
      .reply(["ip", "-json", "addr", "show"], { stdout: fixture("mgmt/moved-addr.json") })
      .reply(["ip", "-json", "route", "show"], { stdout: "not json" });
    const [r] = await reconcile([{ kind: "kernel-bond", name: "bond0", mode: "802.3ad", members: ["eth0", "eth1"], miimon: 100, mtu: 1500 }], opts(runner));
    expect(r).toMatchObject({ result: false, changed: false });
    expect(r!.comment).toMatch(/^not applied: the management path could not be read/);
    expect(runner.mutatingCalls).toEqual([]);
  });
});

describe("planAbsent (netfleet plan: a first apply, nothing read)", () => {
  it("plans each resource on its absent observation, as check mode would: would change, in desired state, or refused", () => {
    const bridge: ResourceSpec = { kind: "ovs-bridge", name: "br-x", datapath: "system", ports: [{ name: "bond0", type: "bond", members: ["eth0", "eth1"], bond_mode: "balance-tcp" }] };
    const results = planAbsent([forward, { kind: "sysctl", name: "net.ipv4.conf.all.rp_filter", value: "0" }, bridge], { owner: "fixture", tools: new Toolbox() });
    expect(results).toMatchObject([
      { id: "sysctl[net.ipv4.ip_forward]", result: null, changed: false, commands: ["sysctl -w net.ipv4.ip_forward=1"], comment: "would change (check mode)" },
      { id: "sysctl[net.ipv4.conf.all.rp_filter]", result: true, commands: [], comment: "in desired state" },
      { id: "ovs-bridge[br-x]", result: false, commands: [], comment: expect.stringMatching(/balance-tcp needs LACP/) },
    ]);
  });
});

describe("the read-back waits, bounded, for a status column ovs-vswitchd fills on its own cycle (Interface.mac_in_use)", () => {
  const WANT = "02:4e:46:00:04:39";
  const uplink: ResourceSpec = {
    kind: "ovs-bridge",
    name: "br-uplink",
    datapath: "netdev",
    ports: [
      { name: "bond0", type: "bond", members: ["eth0", "eth1"], bond_mode: "balance-tcp", trunks: [1081, 1082], lacp: "active" },
      { name: "gw-secure", type: "internal", tag: 1081, mac: WANT },
    ],
  };
  /** The real capture, with gw-secure's mac_in_use still the kernel's own address for the first `staleReads` reads. */
  const lagging = (staleReads: number) => {
    const converged = fixture("ovs/trunk-lacp-active.json");
    expect(converged).toContain(WANT);
    const stale = converged.replace(WANT, "76:0b:9e:21:5c:04");
    let reads = 0;
    const runner = new RecordingRunner()
      .reply(ovsObserveArgv({ tools: new Toolbox() } as never), () => ({ stdout: reads++ < staleReads ? stale : converged }))
      // the management guard's reads (the bond enslaves links): the backend's links, no route through them
      .reply(["ip", "-details", "-json", "link", "show"], { stdout: fixture("ip/empty-link.json") })
      .reply(["ip", "-json", "addr", "show"], { stdout: fixture("ip/empty-addr.json") })
      .reply(["ip", "-json", "route", "show"], { stdout: "[]" });
    return { runner, reads: () => reads };
  };

  it("a port whose address shows up two reads after the write is changed, not failed", async () => {
    const host = lagging(3); // the observe, the first read-back and one re-read
    const [r] = await reconcile([uplink], opts(host.runner));
    expect(r).toMatchObject({ result: true, changed: true, comment: "changed" });
    expect(r!.changes).toEqual({ "port gw-secure mac": { old: "76:0b:9e:21:5c:04", new: WANT } });
    expect(host.runner.mutatingCalls.map((c) => c.argv.slice(-5))).toEqual([["--", "set", "Interface", "gw-secure", `mac="${WANT}"`]]);
    expect(host.reads()).toBe(4);
  });

  it("an address that never comes fails the resource after the bounded wait (2 s: at most 21 re-reads)", async () => {
    const host = lagging(Number.POSITIVE_INFINITY);
    const started = performance.now();
    const [r] = await reconcile([uplink], opts(host.runner));
    expect(r).toMatchObject({ result: false, changed: true, comment: "still differs after apply: port gw-secure mac" });
    expect(host.reads()).toBe(1 + 1 + 20);
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_900);
  });
});

describe("sysctls in one pass: re-read after another's write only where the kernel couples them", () => {
  /** A host's sysctls, as the kernel keeps them: writing net.ipv4.ip_forward sets net.ipv4.conf.all.forwarding too (devinet.c). */
  const kernel = (values: Record<string, string>) => {
    const argvs: string[] = [];
    const runner = {
      async run(command: { argv: string[] }) {
        argvs.push(command.argv.join(" "));
        const [, flag, arg] = command.argv as [string, string, string];
        if (flag === "-n") return { stdout: `${values[arg] ?? "0"}\n`, stderr: "", exitCode: 0, durationMs: 0 };
        const [name, value] = arg.split("=") as [string, string];
        values[name] = value;
        if (name === "net.ipv4.ip_forward") values["net.ipv4.conf.all.forwarding"] = value;
        return { stdout: `${name} = ${value}\n`, stderr: "", exitCode: 0, durationMs: 0 };
      },
    };
    return { runner, argvs, values };
  };
  const sysctl = (name: string, value: string): ResourceSpec => ({ kind: "sysctl", name, value });

  it("four independent keys: each read once up front, written, read back (12 commands), not read again after the others' writes", async () => {
    const host = kernel({});
    const specs = ["net.core.somaxconn", "net.core.netdev_max_backlog", "vm.max_map_count", "fs.inotify.max_user_watches"].map((n) => sysctl(n, "4096"));
    const results = await reconcile(specs, { runner: host.runner as never, tools: new Toolbox(), owner: "fixture" });
    expect(results.map((r) => [r.result, r.changed])).toEqual(specs.map(() => [true, true]));
    expect(host.argvs).toHaveLength(12);
    expect(host.argvs.filter((a) => a === "sysctl -n vm.max_map_count")).toHaveLength(2); // up front, and its read-back
    expect(Object.values(host.values)).toEqual(["4096", "4096", "4096", "4096"]);
  });

  it("net.ipv4.ip_forward then net.ipv4.conf.all.forwarding: the second is read again after the first's write, which set it, and is not written", async () => {
    const host = kernel({ "net.ipv4.ip_forward": "0", "net.ipv4.conf.all.forwarding": "0" });
    const results = await reconcile([sysctl("net.ipv4.ip_forward", "1"), sysctl("net.ipv4.conf.all.forwarding", "1")], { runner: host.runner as never, tools: new Toolbox(), owner: "fixture" });
    expect(results.map((r) => [r.id, r.result, r.changed])).toEqual([
      ["sysctl[net.ipv4.ip_forward]", true, true],
      ["sysctl[net.ipv4.conf.all.forwarding]", true, false],
    ]);
    expect(host.argvs.filter((a) => a.startsWith("sysctl -w"))).toEqual(["sysctl -w net.ipv4.ip_forward=1"]);
    expect(host.argvs.filter((a) => a === "sysctl -n net.ipv4.conf.all.forwarding")).toHaveLength(2);
  });
});
