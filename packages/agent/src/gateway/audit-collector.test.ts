import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { ResourceSpec } from "@netfleet/shared";
import { AuditCollector, auditSources } from "./audit-collector.ts";
import { captureMarker } from "./audit-pidfile.ts";

/** The kernel capture of audit-nflog.test.ts: 4 records of network "x". */
const FIXTURE = fileURLToPath(new URL("./fixtures/nflog-v4.pcap", import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("AuditCollector's capture children", () => {
  it("a capture that exits is started again, the pause doubling up to its cap; stop ends the restarts", async () => {
    const events: Record<string, unknown>[] = [];
    // `cat` writes the capture and exits at once: each run is one exit.
    const c = new AuditCollector({ site: "lab", host: () => undefined, captureArgv: () => ["cat", FIXTURE], restartMinMs: 50, restartMaxMs: 200, log: (e) => events.push(e) });
    c.configure([{ network: "x", group: 7 }]);
    await until("four exits", () => events.filter((e) => e.event === "audit-capture-exit").length >= 4);
    await c.stop();
    const delays = events.filter((e) => e.event === "audit-capture-exit").map((e) => e.restartInMs);
    expect(delays.slice(0, 4)).toEqual([50, 100, 200, 200]);
    expect(c.stats.records % 4).toBe(0); // every run read the whole capture
    expect(c.stats.records).toBeGreaterThanOrEqual(16);
    const starts = events.filter((e) => e.event === "audit-capture-start").length;
    await sleep(400);
    expect(events.filter((e) => e.event === "audit-capture-start").length).toBe(starts);
  });

  it("a capture command that cannot start is retried with backoff and logged, never thrown", async () => {
    const events: Record<string, unknown>[] = [];
    const c = new AuditCollector({ site: "lab", host: () => undefined, captureArgv: () => ["/nonexistent/nf-capture", "-i", "nflog:7"], restartMinMs: 20, restartMaxMs: 40, log: (e) => events.push(e) });
    c.configure([{ network: "x", group: 7 }]);
    await until("two failed starts", () => events.filter((e) => e.event === "audit-capture-exit").length >= 2);
    await c.stop();
    expect(c.stats.records).toBe(0);
    expect(c.stats.restarts).toBeGreaterThanOrEqual(2);
  });

  it("a running capture is stopped by its pid when its network leaves the table, and on stop; a stream that is not pcap is refused and counted lost", async () => {
    const events: Record<string, unknown>[] = [];
    const c = new AuditCollector({
      site: "lab",
      host: () => undefined,
      captureArgv: (g) => (g === 9 ? ["echo", "this is not a pcap stream, but long enough"] : ["tail", "-c", "+1", "-f", FIXTURE]),
      restartMinMs: 60_000,
      log: (e) => events.push(e),
    });
    c.configure([{ network: "x", group: 7 }, { network: "y", group: 8 }, { network: "z", group: 9 }]);
    const pids = Object.fromEntries(c.running().map((r) => [r.network, r.pid!]));
    await until("x's records read", () => c.stats.records >= 4);
    await until("z's stream refused", () => c.stats.badStreams === 1);
    expect(c.stats.lost).toBe(1);
    expect(events.find((e) => e.event === "audit-capture-unreadable")).toMatchObject({ network: "z", format: true });
    expect(alive(pids.x!) && alive(pids.y!)).toBe(true);
    c.configure([{ network: "x", group: 7 }]);
    await until("y's child gone", () => !alive(pids.y!));
    expect(alive(pids.x!)).toBe(true);
    expect(c.running().map((r) => r.network)).toEqual(["x"]);
    await c.stop();
    expect(alive(pids.x!)).toBe(false);
    expect(c.running()).toEqual([]);
  });

  it("a capture left running by a killed agent (its marked pid, our command line) is stopped before ours starts; a marked pid running anything else is left alone", async () => {
    const runDir = mkdtempSync(join(tmpdir(), "nfu-audit-"));
    const argv = ["tail", "-c", "+1", "-f", FIXTURE];
    const stray = spawn("sleep", ["30"], { stdio: "ignore" });
    // What a killed agent leaves: its capture still running, and the marker naming it.
    const left = spawn(argv[0]!, argv.slice(1), { stdio: "ignore" });
    try {
      const orphan = left.pid!;
      await until("the left-behind capture exec'd", () => readFileSync(`/proc/${orphan}/cmdline`, "utf8").split("\0").join(" ").trim() === argv.join(" "));
      mkdirSync(join(runDir, "audit"), { recursive: true });
      writeFileSync(captureMarker(runDir, 7), `${orphan}\n`);
      const events: Record<string, unknown>[] = [];
      const next = new AuditCollector({ site: "lab", host: () => undefined, captureArgv: () => argv, runDir, log: (e) => events.push(e) });
      next.configure([{ network: "x", group: 7 }]);
      await until("the next capture started", () => next.running()[0]?.pid !== undefined);
      expect(events.find((e) => e.event === "audit-capture-orphan-stopped")).toMatchObject({ group: 7, pid: orphan });
      await until("the left-behind capture reaped (it is this process's child here)", () => !alive(orphan));
      const ours = next.running()[0]!.pid!;
      expect(alive(ours)).toBe(true);
      await until("the marker names the new capture", () => readFileSync(captureMarker(runDir, 7), "utf8").trim() === String(ours));
      await next.stop();
      expect(alive(ours)).toBe(false);
      // A marker whose pid now runs something else (a reused pid): untouched.
      writeFileSync(captureMarker(runDir, 8), `${stray.pid}\n`);
      const third = new AuditCollector({ site: "lab", host: () => undefined, captureArgv: () => argv, runDir, log: (e) => events.push(e) });
      third.configure([{ network: "y", group: 8 }]);
      await until("y's capture started", () => third.running()[0]?.pid !== undefined);
      await third.stop();
      expect(alive(stray.pid!)).toBe(true);
      expect(events.filter((e) => e.event === "audit-capture-orphan-stopped")).toHaveLength(1);
    } finally {
      left.kill("SIGKILL");
      stray.kill("SIGTERM");
      rmSync(runDir, { recursive: true, force: true });
    }
  });

  it("audits the nft table's networks that have an audit group, and nothing without a table", () => {
    const table = {
      kind: "nft-table",
      name: "netfleet",
      networks: [
        { name: "secure", auditGroup: 1081 },
        { name: "datain" },
      ],
    } as unknown as ResourceSpec;
    expect(auditSources([table])).toEqual([{ network: "secure", group: 1081 }]);
    expect(auditSources([{ kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" }])).toEqual([]);
  });
});
