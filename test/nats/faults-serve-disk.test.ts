/**
 * `netfleet serve` on a full disk (issue 15 points 4 and 7), produced for
 * real: the state dir is on a 32 MiB tmpfs mounted in a private mount
 * namespace (`unshare -m --propagation private` holding it, serve entered
 * with `nsenter -m`; the test reaches the files through /proc/PID/root).
 * Filling it makes serve log `disk-full` and exit 1 with the one line
 * "disk full: <state dir>" (its nats-server gone with it); a start on the
 * full disk fails with the same line; no partial or temp file is left; once
 * space is freed a restart serves, with the approval, desired state and
 * applied report made before, and a new host enrolls (positive control). Ports 32280-32281.
 */
import { spawn, execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { hostTokenKey, type ControlPlane } from "@netfleet/controller";
import { EventLog, controllerOf, startAgentInProcess, stopChild, until, writeInventory, type Child, type FleetAgent, type Serve, type ServeSecrets } from "./fuzz-fleet.ts";
import type { Report } from "@netfleet/shared";
import { assignmentFor } from "./harness.ts";
import { readJsonLines } from "../json-lines.ts";

const run = promisify(execFile);
const REPO = new URL("../..", import.meta.url).pathname;
const CLI = join(REPO, "packages/controller/src/cli.ts");
const PORT = 32280;

let holder: ReturnType<typeof spawn> | undefined;
const children: Child[] = [];
const agents: FleetAgent[] = [];
const planes: ControlPlane[] = [];
let dir = "";

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => {});
  for (const cp of planes) await cp.close().catch(() => {});
  for (const c of children) await stopChild(c);
  // The tmpfs goes with the namespace's last process.
  if (holder?.pid && holder.exitCode === null) holder.kill("SIGKILL");
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The process exists and is not a zombie (proc(5) stat field 3). */
async function running(pid: number): Promise<boolean> {
  const s = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return s !== "" && s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3) !== "Z";
}

/** `netfleet serve` inside the holder's mount namespace (nsenter execs it: the child's pid is serve's). */
function spawnServe(holderPid: number, inventoryDir: string, stateDir: string): Child {
  const child = spawn("nsenter", ["-t", String(holderPid), "-m", "--", "sh", join(REPO, "scripts/node.sh"), CLI, "serve", inventoryDir, "--listen", `127.0.0.1:${PORT}`, "--state-dir", stateDir], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = new EventLog();
  const noise: string[] = [];
  readJsonLines(child.stdout!, (parsed, line) => {
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) log.push(parsed as Record<string, unknown>);
    else noise.push(line);
  });
  child.stderr!.on("data", (d: Buffer) => noise.push(d.toString()));
  const c: Child = { name: "serve", child, pid: child.pid!, events: log.events, log, noise, exited: new Promise((r) => child.once("exit", (code) => r(code))) };
  children.push(c);
  return c;
}

/** Every file under `root` (not JetStream's own store), with its size. */
async function filesUnder(root: string, skip: string): Promise<{ path: string; size: number }[]> {
  const out: { path: string; size: number }[] = [];
  for (const e of await readdir(root, { withFileTypes: true })) {
    const p = join(root, e.name);
    if (p === skip) continue;
    if (e.isDirectory()) out.push(...(await filesUnder(p, skip)));
    else out.push({ path: p, size: (await stat(p)).size });
  }
  return out;
}

describe("serve on a full disk", () => {
  it("reports disk full with the path and exits; no partial file; after freeing, a restart serves and no approval, desired state or applied report is lost", async () => {
    dir = await mkdtemp(join(tmpdir(), "serve-disk-"));
    const mountPoint = join(dir, "disk");
    await run("mkdir", ["-p", mountPoint]);
    holder = spawn("unshare", ["-m", "--propagation", "private", "sleep", "300"], { stdio: "ignore" });
    const h = holder.pid!;
    const ourNs = await readlink("/proc/self/ns/mnt");
    await until(async () => (await readlink(`/proc/${h}/ns/mnt`).catch(() => ourNs)) !== ourNs, "the holder has its own mount namespace", 5000);
    await run("nsenter", ["-t", String(h), "-m", "--", "mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", mountPoint]);
    const stateDir = join(mountPoint, "controller"); // as serve sees it
    const seen = `/proc/${h}/root${stateDir}`; // as this test reaches it
    const inventoryDir = join(dir, "inventory");
    const url = `nats://127.0.0.1:${PORT}`;
    await writeInventory(inventoryDir, url);

    const start = async (): Promise<Serve> => {
      const proc = spawnServe(h, inventoryDir, stateDir);
      await proc.log.waitFor((e) => e.event === "ready", `serve ready: ${proc.noise.join("")}`, 40_000);
      const secrets = JSON.parse(await readFile(join(seen, "secrets.json"), "utf8")) as ServeSecrets;
      const natsPid = Number((await readFile(join(seen, "nats", "nf-1", "nats.pid"), "utf8")).trim());
      return { proc, url, stateDir: seen, inventoryDir, secrets, natsPid, mintKey: await hostTokenKey(join(seen, "credentials")) };
    };

    // Before: hv1 enrolled and approved, an assignment published for it.
    const serve = await start();
    const hv1 = startAgentInProcess(dir, serve, "hv1");
    agents.push(hv1);
    await hv1.log.waitFor((e) => e.event === "ready", "hv1 enrolls", 20_000);
    const cp = await controllerOf(serve);
    planes.push(cp);
    await cp.publish(assignmentFor("hv1", 3));
    const revision = (await cp.desired.read("hv1"))!.envelope.revision;
    // hv1 applies it and reports; the report is read from the applied bucket (no watch runs: lastApplied reads KV).
    let report: Report | undefined;
    await until(async () => {
      report = await cp.lastApplied("hv1");
      return report?.revision === revision && !report.rolledBack;
    }, () => `hv1 has not reported revision ${revision} applied: ${JSON.stringify(report)}`, 15_000);
    await hv1.stop(); // nothing rewrites the report from here on
    await cp.close();

    // The attack: the file system of the state dir fills up.
    const filler = join(`/proc/${h}/root${mountPoint}`, "filler");
    await expect(writeFile(filler, Buffer.alloc(64 << 20, 1))).rejects.toMatchObject({ code: "ENOSPC" });
    const t0 = Date.now();
    const code = await Promise.race([serve.proc.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000))]);
    expect(code).toBe(1);
    const exitMs = Date.now() - t0;
    expect(serve.proc.events.some((e) => e.event === "disk-full" && e.path === stateDir)).toBe(true);
    expect(serve.proc.noise.join("")).toBe(`netfleet serve: disk full: ${stateDir}\n`);
    await until(async () => !(await running(serve.natsPid)), "nats-server gone with serve", 10_000 - (Date.now() - t0));
    console.log(`serve exited ${exitMs} ms after the disk filled; nats-server gone at ${Date.now() - t0} ms`);

    // A start on the still-full disk: the same one line, nothing started.
    const full = spawnServe(h, inventoryDir, stateDir);
    expect(await Promise.race([full.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 15_000))])).toBe(1);
    expect(full.noise.join("")).toBe(`netfleet serve: disk full: ${stateDir}\n`);
    expect(full.events.some((e) => e.event === "nats-started")).toBe(false);

    // No partial or temp file: every file of ours is whole (JSON parses, configs non-empty); serve.lock is empty by design.
    const files = await filesUnder(seen, join(seen, "nats", "nf-1", "jetstream"));
    expect(files.filter((f) => /\.tmp$|\.[0-9a-f]{8,}$/.test(f.path)).map((f) => f.path)).toEqual([]);
    expect(files.filter((f) => f.size === 0 && !f.path.endsWith("serve.lock")).map((f) => f.path)).toEqual([]);
    for (const f of files.filter((f) => f.path.endsWith(".json"))) JSON.parse(await readFile(f.path, "utf8"));

    // Space freed: a restart serves; the approval and the desired state are there; a new host enrolls (control).
    await rm(filler);
    const again = await start();
    const cp2 = await controllerOf(again);
    planes.push(cp2);
    expect((await cp2.registry.get("hv1"))?.state).toBe("approved");
    expect((await cp2.desired.read("hv1"))?.envelope.revision).toBe(revision);
    expect(await cp2.lastApplied("hv1")).toEqual(report); // hv1's applied report written before the disk filled
    expect((await cp2.status()).find((r) => r.host === "hv1")?.applied?.revision).toBe(revision);
    const hv2 = startAgentInProcess(dir, again, "hv2");
    agents.push(hv2);
    await hv2.log.waitFor((e) => e.event === "ready", "hv2 enrolls after the disk is freed", 20_000);
    expect((await cp2.registry.get("hv2"))?.state).toBe("approved");
    const t1 = Date.now();
    await stopChild(again.proc);
    console.log(`serve stopped ${Date.now() - t1} ms after SIGTERM`);
  });
});
