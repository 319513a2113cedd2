import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixture } from "../resources/fixtures.ts";
import { Toolbox } from "../tools.ts";
import { DnsmasqWatch, rotateLog, type WatchHost } from "./dnsmasq-watch.ts";

/**
 * The lab backend the fixtures were captured on: its secure network's pid
 * file and /proc/<pid>/cmdline of that dnsmasq, and of another process.
 */
const tools = new Toolbox({ runDir: "/tmp/nfy-lab/hosts/backend/agent" });
const pidFile = "/tmp/nfy-lab/hosts/backend/agent/dnsmasq/secure.pid";
const ourArgv = fixture("dnsmasq/lab-secure.cmdline").split("\0").filter(Boolean);
const otherArgv = fixture("dnsmasq/lab-ovsdb.cmdline").split("\0").filter(Boolean);
const ourPid = Number(fixture("dnsmasq/lab-secure.pid").trim());

function fakeHost(procs: Map<number, string[]>, files: Map<string, string>, sizes = new Map<string, number>()) {
  const reopened: number[] = [];
  const rotated: string[] = [];
  const host: WatchHost = {
    readFile: async (p) => files.get(p),
    processArgv: async (pid) => procs.get(pid),
    size: async (p) => sizes.get(p),
    rotate: async (log, keep) => void rotated.push(`${log} keep ${keep}`),
    reopenLog: (pid) => void reopened.push(pid),
  };
  return { host, reopened, rotated };
}

function watch(host: WatchHost, networks: string[] = ["secure"]) {
  const exits: [string, number][] = [];
  const events: Record<string, unknown>[] = [];
  const w = new DnsmasqWatch({ tools, networks: () => networks, onExit: (n, p) => exits.push([n, p]), log: (e) => events.push(e), host, logMaxBytes: 1000 });
  return { w, exits, events };
}

describe("dnsmasq watch", () => {
  it("adopts the pid in the pid file once it runs our config, and reports its exit once", async () => {
    const procs = new Map([[ourPid, ourArgv]]);
    const { host } = fakeHost(procs, new Map([[pidFile, `${ourPid}\n`]]));
    const { w, exits, events } = watch(host);
    await w.tick();
    expect(w.pids()).toEqual({ secure: ourPid });
    expect(exits).toEqual([]);
    procs.delete(ourPid); // kill -9
    await w.tick();
    expect(exits).toEqual([["secure", ourPid]]);
    expect(events).toContainEqual({ event: "dnsmasq-exit", network: "secure", pid: ourPid, restartInMs: 0 });
    await w.tick(); // the pid file still names the dead pid: nothing more until a new one of ours runs
    expect(exits).toHaveLength(1);
  });

  it("a pid that is not our dnsmasq (another program, a recycled pid) is never watched or acted on", async () => {
    const procs = new Map([[ourPid, otherArgv]]);
    const { host } = fakeHost(procs, new Map([[pidFile, `${ourPid}\n`]]));
    const { w, exits } = watch(host);
    await w.tick();
    procs.delete(ourPid);
    await w.tick();
    expect(w.pids()).toEqual({});
    expect(exits).toEqual([]);
  });

  it("a watched pid reused by another program counts as an exit", async () => {
    const procs = new Map([[ourPid, ourArgv]]);
    const { host } = fakeHost(procs, new Map([[pidFile, `${ourPid}\n`]]));
    const { w, exits } = watch(host);
    await w.tick();
    procs.set(ourPid, otherArgv);
    await w.tick();
    expect(exits).toEqual([["secure", ourPid]]);
  });

  it("a network no longer assigned is no longer watched", async () => {
    const procs = new Map([[ourPid, ourArgv]]);
    const { host } = fakeHost(procs, new Map([[pidFile, `${ourPid}\n`]]));
    const networks = ["secure"];
    const { w, exits } = watch(host, networks);
    await w.tick();
    networks.pop();
    procs.delete(ourPid); // cleanup stopped it
    await w.tick();
    expect(exits).toEqual([]);
    expect(w.pids()).toEqual({});
  });

  it("after three exits within a minute the next restart waits (no spinning on a dnsmasq that dies at once)", async () => {
    const procs = new Map<number, string[]>();
    const files = new Map<string, string>();
    const { host } = fakeHost(procs, files);
    const { w, exits, events } = watch(host);
    for (let i = 1; i <= 4; i++) {
      procs.set(1000 + i, ourArgv);
      files.set(pidFile, `${1000 + i}\n`);
      await w.tick();
      procs.delete(1000 + i);
      await w.tick();
    }
    expect(exits.map(([, p]) => p)).toEqual([1001, 1002, 1003]);
    expect(events.filter((e) => e.event === "dnsmasq-exit").map((e) => e.restartInMs)).toEqual([0, 0, 0, 1000]);
    await w.stop();
  });

  it("rotates a log past its size limit and signals that dnsmasq to reopen it", async () => {
    const procs = new Map([[ourPid, ourArgv]]);
    const log = "/tmp/nfy-lab/hosts/backend/agent/dnsmasq/secure.log";
    const sizes = new Map([[log, 999]]);
    const { host, reopened, rotated } = fakeHost(procs, new Map([[pidFile, `${ourPid}\n`]]), sizes);
    const { w, events } = watch(host);
    await w.tick(); // adopted
    await w.tick(); // 999 bytes: under the limit
    expect(reopened).toEqual([]);
    sizes.set(log, 1001);
    await w.tick();
    expect(rotated).toEqual([`${log} keep 3`]);
    expect(reopened).toEqual([ourPid]);
    expect(events).toContainEqual({ event: "dnsmasq-log-rotated", network: "secure", pid: ourPid, bytes: 1001 });
  });
});

describe("rotateLog (real files)", () => {
  const dir = mkdtempSync(join(tmpdir(), "nfd-rotate-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("shifts .1 → .2 …, keeps N, and leaves an empty log of the same owner and mode (0660, as the dnsmasq resource makes it)", async () => {
    const log = join(dir, "secure.log");
    writeFileSync(log, "third\n");
    chmodSync(log, 0o660);
    writeFileSync(`${log}.1`, "second\n");
    writeFileSync(`${log}.2`, "first\n");
    await rotateLog(log, 2);
    expect(readdirSync(dir).sort()).toEqual(["secure.log", "secure.log.1", "secure.log.2"]);
    expect(readFileSync(log, "utf8")).toBe("");
    expect(readFileSync(`${log}.1`, "utf8")).toBe("third\n");
    expect(readFileSync(`${log}.2`, "utf8")).toBe("second\n");
    expect(statSync(log).mode & 0o777).toBe(0o660);
    expect(statSync(log).uid).toBe(statSync(`${log}.1`).uid);
    expect(statSync(log).gid).toBe(statSync(`${log}.1`).gid);
  });
});
