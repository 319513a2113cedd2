import { describe, expect, it } from "vitest";
import type { ResourceSpec } from "@netfleet/shared";
import { reconcile } from "./engine.ts";
import { RecordingRunner } from "./exec/recording-runner.ts";
import { fixture } from "./resources/fixtures.ts";
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
