/**
 * `netfleet serve` supervises its nats-server (issue 15 point 2, faults of
 * point 7), attacked with real processes on loopback (ports 32270-32272,
 * monitoring +200): kill -9 of the nats-server under serve, kill -9 of
 * serve, a second serve on the same state dir, an orphan nats-server on the
 * port. Each looks at the target (process table by pid, exit code and
 * stderr, the KV records: approval, desired revision and the applied report
 * written before the fault; the server's user list through a login) and
 * keeps a positive control.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "@netfleet/controller";
import type { Report } from "@netfleet/shared";
import { alive, controllerOf, spawnChild, startAgentInProcess, startServe, stopChild, until, type Child, type FleetAgent, type Serve } from "./fuzz-fleet.ts";
import { assignmentFor } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const CLI = join(REPO, "packages/controller/src/cli.ts");

const dirs: string[] = [];
const children: Child[] = [];
const pids: number[] = [];
const planes: ControlPlane[] = [];
const agents: FleetAgent[] = [];

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => {});
  for (const cp of planes) await cp.close().catch(() => {});
  for (const c of children) await stopChild(c);
  // Only a nats-server still at that pid (never a process that reused it).
  for (const pid of pids) if ((await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).startsWith("nats-server")) process.kill(pid, "SIGKILL");
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "serve-sup-"));
  dirs.push(dir);
  return dir;
}

async function serveOn(dir: string, port: number): Promise<Serve> {
  const s = await startServe(dir, port);
  children.push(s.proc);
  pids.push(s.natsPid);
  return s;
}

/** `netfleet serve` on an existing inventory and state dir, not waited for. */
function spawnServe(s: Serve, port: number): Child {
  const c = spawnChild("serve", [CLI, "serve", s.inventoryDir, "--listen", `127.0.0.1:${port}`, "--state-dir", s.stateDir]);
  children.push(c);
  return c;
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: "127.0.0.1", port });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

async function exitWithin(c: Child, ms: number): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  const code = await Promise.race([c.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms))]);
  if (code === "timeout") throw new Error(`${c.name} (pid ${c.pid}) still runs after ${ms} ms: ${c.noise.join("").slice(-800)}`);
  return { code, ms: Date.now() - t0 };
}

const stderrOf = (c: Child) => c.noise.join("");

/** The process exists and is not a zombie (a killed child waits in state Z until its new parent reaps it; proc(5) stat). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
}

/**
 * `host`'s applied report once it has applied `revision` (not rolled back),
 * read from the applied bucket (ControlPlane.lastApplied with no watch
 * running reads KV); polled, at most 15 s.
 */
async function appliedReport(cp: ControlPlane, host: string, revision: number): Promise<Report> {
  let report: Report | undefined;
  await until(async () => {
    report = await cp.lastApplied(host);
    return report?.revision === revision && !report.rolledBack;
  }, () => `${host} has not reported revision ${revision} applied: ${JSON.stringify(report)}`, 15_000);
  return report!;
}

describe("serve supervises its nats-server", () => {
  it("kill -9 of nats-server: serve exits 1 naming it; a restarted serve keeps the approval, desired state and applied report, loads the host's login, and refuses a second serve on its state dir", async () => {
    const dir = await scratch();
    const serve = await serveOn(dir, 32270);
    const agent = startAgentInProcess(dir, serve, "hv1");
    agents.push(agent);
    await agent.log.waitFor((e) => e.event === "ready", "hv1 enrolls and is approved", 20_000);
    const cp = await controllerOf(serve);
    planes.push(cp);
    await cp.publish(assignmentFor("hv1", 7));
    const before = (await cp.desired.read("hv1"))!.envelope.revision;
    const report = await appliedReport(cp, "hv1", before);
    await agent.stop(); // nothing rewrites the report from here on: what is read after the restart was written before the fault
    await cp.close();
    // The Go runtime settings serve starts its nats-server with (NATS_GO_RUNTIME), read from the process itself.
    const environ = (await readFile(`/proc/${serve.natsPid}/environ`, "utf8")).split("\0");
    expect(environ).toContain("GOGC=400");
    expect(environ.find((e) => e.startsWith("GODEBUG="))?.split("=").slice(1).join("=").split(",")).toContain("gcshrinkstackoff=1");

    process.kill(serve.natsPid, "SIGKILL");
    const { code, ms } = await exitWithin(serve.proc, 10_000);
    expect(code).toBe(1);
    expect(stderrOf(serve.proc)).toMatch(new RegExp(`netfleet serve: nats-server nf-1 pid ${serve.natsPid} ended unexpectedly \\(killed by SIGKILL\\)`));
    expect(stderrOf(serve.proc)).not.toMatch(/\n\s+at /); // one line, no stack
    expect(serve.proc.events.some((e) => e.event === "nats-exited" && e.pid === serve.natsPid)).toBe(true);
    console.log(`serve exited ${ms} ms after kill -9 of its nats-server`);

    // Restart on the same state dir: everything approved and published before is there.
    const again = await serveOn(dir, 32270);
    const cp2 = await controllerOf(again);
    planes.push(cp2);
    expect((await cp2.registry.get("hv1"))?.state).toBe("approved");
    expect((await cp2.desired.read("hv1"))?.envelope.revision).toBe(before);
    expect(await cp2.lastApplied("hv1")).toEqual(report); // the applied report, read from the applied bucket
    expect((await cp2.status()).find((r) => r.host === "hv1")?.applied?.revision).toBe(before);
    // The running server loaded hv1's credentials: hv1 logs in with them (control: a wrong password is refused).
    const cred = JSON.parse(await readFile(join(again.stateDir, "credentials", "hv1.json"), "utf8")) as { user: string; password: string };
    const nc = await connect({ servers: again.url, user: cred.user, pass: cred.password, reconnect: false });
    await nc.close();
    await expect(connect({ servers: again.url, user: cred.user, pass: `${cred.password}x`, reconnect: false })).rejects.toThrow();

    // A second serve on the same state dir (another port, so it would not even clash there) is refused naming the holders.
    const second = spawnServe(again, 32271);
    expect((await exitWithin(second, 20_000)).code).toBe(1);
    const err = stderrOf(second);
    expect(err).toContain(`netfleet serve: state dir ${again.stateDir} is in use: ${join(again.stateDir, "serve.lock")} is locked by`);
    expect(err).toContain(`netfleet serve pid ${again.proc.pid}`);
    expect(err).toContain(`nats-server pid ${again.natsPid}`);
    expect(second.events.some((e) => e.event === "ready" || e.event === "nats-started")).toBe(false);
    expect(await listening(32271)).toBe(false); // no second nats-server on the store
    // Positive control: the first still answers status, with the same nats-server.
    expect((await cp2.status()).find((r) => r.host === "hv1")).toBeDefined();
    expect(Number((await readFile(join(again.stateDir, "nats", "nf-1", "nats.pid"), "utf8")).trim())).toBe(again.natsPid);
    expect(again.proc.child.exitCode).toBeNull();
    await stopChild(again.proc);
  });

  it("kill -9 of serve: its nats-server is gone within 2 s, the restarted serve keeps the approval, desired state and applied report; an orphan nats-server on the port is refused, not taken for ours", async () => {
    const dir = await scratch();
    const serve = await serveOn(dir, 32272);
    expect(alive(serve.natsPid)).toBe(true);
    // State written before the fault: hv1 approved, a desired state, hv1's applied report of it.
    const agent = startAgentInProcess(dir, serve, "hv1");
    agents.push(agent);
    await agent.log.waitFor((e) => e.event === "ready", "hv1 enrolls and is approved", 20_000);
    const cp = await controllerOf(serve);
    planes.push(cp);
    await cp.publish(assignmentFor("hv1", 3));
    const before = (await cp.desired.read("hv1"))!.envelope.revision;
    const report = await appliedReport(cp, "hv1", before);
    await agent.stop();
    await cp.close();
    serve.proc.child.kill("SIGKILL");
    await serve.proc.exited;
    const t0 = Date.now();
    await until(async () => !(await running(serve.natsPid)), `nats-server pid ${serve.natsPid} outlives its serve`, 2000);
    console.log(`nats-server gone ${Date.now() - t0} ms after serve's SIGKILL was reaped`);
    const first = await serveOn(dir, 32272); // positive control: the lock and the port were released
    expect(alive(first.natsPid)).toBe(true);
    // Nothing lost to the kill -9: approval, desired revision and the applied report, read back from the buckets.
    const cp2 = await controllerOf(first);
    planes.push(cp2);
    expect((await cp2.registry.get("hv1"))?.state).toBe("approved");
    expect((await cp2.desired.read("hv1"))?.envelope.revision).toBe(before);
    expect(await cp2.lastApplied("hv1")).toEqual(report);
    expect((await cp2.status()).find((r) => r.host === "hv1")?.applied?.revision).toBe(before);
    await cp2.close();
    await stopChild(first.proc);
    expect(alive(first.natsPid)).toBe(false);

    // An orphan nats-server on the state dir's port is refused, not taken for ours.
    // The orphan an older serve left: a nats-server on serve's own config (same ports, store and pid file), not our child.
    const orphan = spawn("nats-server", ["-c", join(first.stateDir, "nats", "nf-1", "nats.conf")], { stdio: "ignore" });
    pids.push(orphan.pid!);
    await until(() => listening(32272), "the orphan listens", 10_000);
    const second = spawnServe(first, 32272);
    const { code } = await exitWithin(second, 20_000);
    expect(code).toBe(1);
    expect(stderrOf(second)).toMatch(new RegExp(`127\\.0\\.0\\.1:32272 .*is already served by nats-server nf-1 \\(server_id N\\w+(, started [^,]+)?, pid ${orphan.pid} per `));
    expect(second.events.some((e) => e.event === "ready")).toBe(false);
    expect(alive(orphan.pid!)).toBe(true); // refused, not killed: it is not ours
    orphan.kill("SIGKILL");
    await until(async () => !(await running(orphan.pid!)), "the orphan dies", 5000);

    // Positive control: a serve on the freed port is ready. (SIGTERM with the server wedged: faults-serve-signals.test.ts.)
    const third = await serveOn(dir, 32272);
    expect(third.proc.events.some((e) => e.event === "ready")).toBe(true);
    await stopChild(third.proc);
  });
});
