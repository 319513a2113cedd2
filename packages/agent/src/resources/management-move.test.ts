import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { KernelBondSpec, ResourceSpec } from "@netfleet/shared";
import { reconcile } from "../engine.ts";
import { RecordingRunner } from "../exec/recording-runner.ts";
import { Toolbox } from "../tools.ts";
import { fixture } from "./fixtures.ts";
import { undoLines, type ManagementMove } from "./management-guard.ts";
import { moveRecordPath, readMoveRecord } from "./management-move.ts";

// The engine's management guard and move, driven with the captured `ip` output of
// __fixtures__/mgmt ("before": eth0 holds 10.98.0.11/24 and the default route via
// 10.98.0.254; "moved": both on bond0). The host "changes" when the move batch runs.

const bond: KernelBondSpec = { kind: "kernel-bond", name: "bond0", mode: "active-backup", members: ["eth0", "eth1"], miimon: 100, mtu: 1500 };
const managed: KernelBondSpec = { ...bond, management: { address: "10.98.0.11/24" } };
const vlan: ResourceSpec = { kind: "vlan-interface", name: "bond0.1090", parent: "bond0", vlan: 1090, mtu: 1500 };
const forward: ResourceSpec = { kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" };
const PING = ["ping", "-n", "-c", "1", "-W", "1", "-I", "bond0", "10.98.0.254"];
const PING_ETH0 = ["ping", "-n", "-c", "1", "-W", "1", "-I", "eth0", "10.98.0.254"];

let dir: string;
let tools: Toolbox;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nf-mgmt-"));
  tools = new Toolbox({ runDir: dir });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A host in state "before" until a move batch runs; `gateway`: whether pings through bond0 are answered. */
function host(options: { gateway: boolean; onBatch?: () => void }) {
  let state: "before" | "moved" = "before";
  const f = (n: string) => () => ({ stdout: fixture(`mgmt/${state}-${n}.json`) });
  const runner = new RecordingRunner()
    .reply(["ip", "-details", "-json", "link", "show"], f("link"))
    .reply(["ip", "-json", "addr", "show"], f("addr"))
    .reply(["ip", "-json", "route", "show"], f("route"))
    .reply(["sysctl", "-n", "net.ipv4.ip_forward"], { stdout: "1\n" })
    .reply(["ip", "-batch", "-"], () => {
      options.onBatch?.();
      state = "moved";
      return {};
    })
    .reply(["ip", "-force", "-batch", "-"], () => {
      state = "before";
      return {};
    })
    .reply(PING, () => (options.gateway ? { stdout: "1 received" } : { exitCode: 1, stdout: "0 received" }))
    // through eth0 the gateway answers while eth0 holds the address (before the move, or after its undo)
    .reply(PING_ETH0, () => (state === "before" ? { stdout: "1 received" } : { exitCode: 1, stdout: "0 received" }));
  return { runner, state: () => state };
}

const opts = (runner: RecordingRunner, extra: object = {}) => ({ runner, tools, owner: "fixture", lockout: { attempts: 2 }, ...extra });

describe("engine: management guard", () => {
  it("refuses the bond and what depends on it before any command; the rest of the pass runs", async () => {
    const { runner } = host({ gateway: true });
    const results = await reconcile([bond, vlan, forward], opts(runner));
    expect(results.map((r) => [r.id, r.result])).toEqual([
      ["kernel-bond[bond0]", false],
      ["vlan-interface[bond0.1090]", false],
      ["sysctl[net.ipv4.ip_forward]", true],
    ]);
    expect(results[0]!.comment).toMatch(/^eth0 holds 10\.98\.0\.11\/24 and the default route via 10\.98\.0\.254; enslaving it to bond0 would cut this host off its controller/);
    expect(runner.mutatingCalls).toEqual([]);
  });

  it("a host whose routes cannot be read: an apply enslaves nothing (fail closed); check mode plans on", async () => {
    const blind = () =>
      new RecordingRunner()
        .reply(["ip", "-details", "-json", "link", "show"], { stdout: fixture("mgmt/before-link.json") })
        .reply(["ip", "-json", "addr", "show"], { stdout: fixture("mgmt/before-addr.json") })
        .reply(["ip", "-json", "route", "show"], { exitCode: 1, stderr: "RTNETLINK answers: Operation not permitted" });
    const runner = blind();
    const [applied] = await reconcile([{ ...bond, members: ["eth1"] }], opts(runner));
    expect(applied).toMatchObject({ result: false, changed: false });
    expect(applied!.comment).toMatch(/^not applied: the management path could not be read \(ip -json route show exited 1: RTNETLINK answers: Operation not permitted\)/);
    expect(runner.mutatingCalls).toEqual([]);
    const [checked] = await reconcile([{ ...bond, members: ["eth1"] }], opts(blind(), { check: true }));
    expect(checked).toMatchObject({ result: null });
  });

  it("check mode shows the refusal too, and the move as a change, and writes no record", async () => {
    const refused = await reconcile([bond], opts(host({ gateway: true }).runner, { check: true }));
    expect(refused[0]).toMatchObject({ result: false });
    const { runner } = host({ gateway: true });
    const [moved] = await reconcile([managed], opts(runner, { check: true }));
    expect(moved).toMatchObject({ result: null, changes: { management: { old: "10.98.0.11/24 on eth0", new: "10.98.0.11/24 on bond0" } } });
    expect(runner.mutatingCalls).toEqual([]);
    expect(existsSync(join(dir, "state"))).toBe(false);
  });

  it("a move: the record is written before the batch runs, the gateway is probed through bond0, the record removed", async () => {
    let recorded: ManagementMove[] | undefined;
    const { runner } = host({ gateway: true, onBatch: () => (recorded = JSON.parse(readFileSync(join(dir, "state/management-move.json"), "utf8")) as ManagementMove[]) });
    const [r] = await reconcile([managed], opts(runner));
    expect(recorded).toEqual([
      expect.objectContaining({ bond: "bond0", member: "eth0", address: "10.98.0.11/24", target: "10.98.0.254" }),
    ]);
    expect(recorded![0]!.routes.map((x) => `${x.dst} via ${x.gateway} dev ${x.dev}`)).toEqual(["default via 10.98.0.254 dev eth0", "10.99.0.0/24 via 10.98.0.254 dev eth0"]);
    expect(r).toMatchObject({ result: true, changed: true });
    expect(r!.comment).toMatch(/^changed; moved 10\.98\.0\.11\/24 and 2 route\(s\) from eth0 onto bond0; lockout check: 10\.98\.0\.254 answered through bond0 \(1 ping\(s\), \d+ ms\)$/);
    expect(runner.calls.filter((c) => c.argv[0] === "ping")).toHaveLength(1);
    expect(existsSync(join(dir, "state/management-move.json"))).toBe(false);
    expect(existsSync(join(dir, "state/management-move-failed.json"))).toBe(false);
  });

  it("a dead path: the move is undone, recorded as failed, and the next pass refuses it without running anything", async () => {
    const h = host({ gateway: false });
    const [r] = await reconcile([managed], opts(h.runner));
    expect(r!.result).toBe(false);
    expect(r!.comment).toMatch(/^moved 10\.98\.0\.11\/24 from eth0 onto bond0, then undone: 10\.98\.0\.254 did not answer through bond0 \(2 pings, \d+ s\); 10\.98\.0\.11\/24 and the routes are back on eth0; 10\.98\.0\.254 answered through eth0 again$/);
    // after the undo, a probe through eth0: its ARP request makes the gateway forget the bond's MAC
    expect(h.runner.calls.filter((c) => c.argv[0] === "ping").map((c) => c.argv[7])).toEqual(["bond0", "bond0", "eth0"]);
    const undo = h.runner.calls.find((c) => c.argv.join(" ") === "ip -force -batch -")!;
    expect(undo.stdin).toBe(
      "link set dev eth0 nomaster\nlink set dev eth1 nomaster\naddr del 10.98.0.11/24 dev bond0\nlink set dev eth0 up\nlink set dev eth1 up\naddr add 10.98.0.11/24 dev eth0\nroute replace default via 10.98.0.254 dev eth0\nroute replace 10.99.0.0/24 via 10.98.0.254 dev eth0 metric 50\n",
    );
    expect(h.state()).toBe("before");
    expect(JSON.parse(readFileSync(join(dir, "state/management-move-failed.json"), "utf8"))).toMatchObject({ bond: "bond0", member: "eth0", address: "10.98.0.11/24" });
    const before = h.runner.mutatingCalls.length;
    const [again] = await reconcile([managed], opts(h.runner));
    expect(again!.result).toBe(false);
    expect(again!.comment).toMatch(/^moving 10\.98\.0\.11\/24 from eth0 onto bond0 failed its lockout check at .* remove .*management-move-failed\.json to try again$/);
    expect(h.runner.mutatingCalls.length).toBe(before);
  });

  it("a record left by a crash mid-move is settled first on the next start: probed, and undone when the path is dead", async () => {
    const move: ManagementMove = { bond: "bond0", members: ["eth0", "eth1"], member: "eth0", address: "10.98.0.11/24", addresses: ["10.98.0.11/24"], routes: [{ dst: "default", gateway: "10.98.0.254", dev: "eth0" }], target: "10.98.0.254" };
    mkdirSync(join(dir, "state"));
    writeFileSync(join(dir, "state/management-move.json"), JSON.stringify([move]));
    const h = host({ gateway: false });
    await reconcile([forward], opts(h.runner)); // any pass, before its own commands
    const first = h.runner.mutatingCalls[0]!;
    expect(first.argv).toEqual(["ip", "-force", "-batch", "-"]);
    expect(first.stdin).toBe(undoLines(move).map((l) => l.join(" ")).join("\n") + "\n");
    expect(h.runner.mutatingCalls.map((c) => c.argv[0])).toEqual(["ip"]); // forwarding was on already
    expect(existsSync(join(dir, "state/management-move.json"))).toBe(false);
    expect(existsSync(join(dir, "state/management-move-failed.json"))).toBe(true);
  });

  it("control: a record whose path works is kept as moved (no undo), and dropped", async () => {
    const move: ManagementMove = { bond: "bond0", members: ["eth0", "eth1"], member: "eth0", address: "10.98.0.11/24", addresses: ["10.98.0.11/24"], routes: [], target: "10.98.0.254" };
    mkdirSync(join(dir, "state"));
    writeFileSync(join(dir, "state/management-move.json"), JSON.stringify([move]));
    const h = host({ gateway: true });
    await reconcile([forward], opts(h.runner));
    expect(h.runner.mutatingCalls).toEqual([]);
    expect(h.runner.calls.filter((c) => c.argv[0] === "ping")).toHaveLength(1);
    expect(existsSync(join(dir, "state/management-move.json"))).toBe(false);
  });
});

describe("management move records on disk", () => {
  it("reads a record, and takes none for an absent file, a symlink (not followed) or a FIFO (never waited on)", async () => {
    const path = moveRecordPath(tools);
    mkdirSync(join(path, ".."), { recursive: true });
    expect(await readMoveRecord(tools)).toBeUndefined();
    const moves: ManagementMove[] = [{ address: "10.98.0.11/24", from: "eth0", to: "bond0", routes: [] } as unknown as ManagementMove];
    writeFileSync(path, JSON.stringify(moves));
    expect(await readMoveRecord(tools)).toEqual(moves);
    // A symlink at the record's name, to a valid record elsewhere: not followed.
    const elsewhere = join(dir, "elsewhere.json");
    writeFileSync(elsewhere, JSON.stringify(moves));
    rmSync(path);
    symlinkSync(elsewhere, path);
    expect(await readMoveRecord(tools)).toBeUndefined();
    // A FIFO (mkfifo(1)): no writer would ever come; the read must not wait for one.
    rmSync(path);
    execFileSync("mkfifo", [path]);
    expect(await readMoveRecord(tools)).toBeUndefined();
  });
});
