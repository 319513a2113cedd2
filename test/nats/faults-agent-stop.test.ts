/**
 * Fault suite: an agent stopped without NATS. The real agent process
 * (`netfleet-agent run`, packages/agent/src/cli.ts, or sim-agent.ts where
 * an apply must run: both stop through fleet-mode.ts runUntilStopped) gets
 * SIGTERM in each state and must exit within 10 s with code 0 (README: the
 * agent's exit codes), NATS reachable or not: connecting to a port where
 * no server listens, reconnecting to a killed server, enrolled and
 * connecting to a dead server, waiting for a welcome (a site join token:
 * a pending claim), and idle while connected (in the middle of an apply
 * and waiting for an apply's confirmation: faults-agent-apply.test.ts).
 * Positive control: the same command with a live server enrolls (a host
 * token) and connects, and connects again with the credentials it kept.
 * Ports 32300-32329.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { newJoinToken } from "@netfleet/shared";
import { readJsonLines } from "../json-lines.ts";
import { SITE, eventually, inventoryHost, startSite, type AgentProcess } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const STOP_LIMIT_MS = 10_000;

interface CliAgent extends AgentProcess {
  /** ms since the epoch of each event, by the agent's own clock. */
  times: number[];
}

const children: ChildProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGKILL");
      await new Promise((r) => c.once("exit", r));
    }
  }
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** `netfleet-agent run` as its own process: the fleet agent, on this host's real tools (it changes nothing until an assignment arrives). */
async function spawnCli(o: { nats: string; token: string; stateDir: string; name?: string }): Promise<CliAgent> {
  const tokenFile = join(o.stateDir, "..", `token-${o.name ?? "hv1"}`);
  await mkdir(o.stateDir, { recursive: true });
  await writeFile(tokenFile, `${o.token}\n`, { mode: 0o600 });
  const args = ["run", "--site", SITE, "--nats", o.nats, "--token-file", tokenFile, "--name", o.name ?? "hv1", "--state-dir", o.stateDir, "--run-dir", join(o.stateDir, "run"), "--no-watch", "--heartbeat", "1"];
  const env = { ...process.env };
  delete env.NOTIFY_SOCKET;
  const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(REPO, "packages/agent/src/cli.ts"), ...args], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const events: Record<string, unknown>[] = [];
  const times: number[] = [];
  readJsonLines(child.stdout!, (parsed, line) => {
    const e = parsed === undefined ? { event: "stdout", line } : (parsed as Record<string, unknown>);
    events.push(e);
    times.push(typeof e.ts === "string" ? Date.parse(e.ts) : Date.now());
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  void exited.then(() => {
    if (stderr.trim()) events.push({ event: "stderr", text: stderr.slice(0, 2000) });
  });
  return { child, events, exited, times };
}

/** SIGTERM; resolves with the exit code and how long the process took to end (ms). SIGKILL after 20 s (a failure). */
async function terminate(p: AgentProcess): Promise<{ code: number | null; ms: number }> {
  const t = Date.now();
  p.child.kill("SIGTERM");
  const kill = setTimeout(() => p.child.kill("SIGKILL"), 20_000);
  const code = await p.exited;
  clearTimeout(kill);
  return { code, ms: Date.now() - t };
}

/** No server listens on the port (the connect is refused): the precondition of "NATS unreachable". */
async function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

const count = (p: AgentProcess, event: string, extra: (e: Record<string, unknown>) => boolean = () => true) => p.events.filter((e) => e.event === event && extra(e)).length;

describe("an agent stopped without NATS (SIGTERM, the real process): exit 0 within 10 s in every state", () => {
  it("connecting to a port with no server (not enrolled): its dials back off per dial, and SIGTERM ends it", async () => {
    const port = 32300;
    expect(await refused(port)).toBe(true);
    const dir = await mkdtemp(join(tmpdir(), "reconnect-stop-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const agent = await spawnCli({ nats: `nats://127.0.0.1:${port}`, token: newJoinToken().token, stateDir: join(dir, "state") });
    // Each failed attempt (one dial: one server) is logged; wait for six, i.e. about 250+500+1000+2000+4000 ms of backing off.
    await eventually(() => count(agent, "connection-lost", (e) => e.during === "enroll") >= 6, "six refused attempts", 30_000);
    const attempts = agent.events.flatMap((e, i) => (e.event === "connection-lost" ? [agent.times[i]!] : []));
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    console.log(`refused attempts ${attempts.length}, gaps ${gaps.join(", ")} ms`);
    // Equal jitter: wait k is in [step k / 2, step k], so each wait is at least the one before (timer slack aside), and none is over the 5 s cap.
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThanOrEqual(gaps[i - 1]! - 50);
    expect(gaps[0]!).toBeLessThan(1000);
    expect(Math.max(...gaps)).toBeLessThan(5000 + 500);
    const { code, ms } = await terminate(agent);
    console.log(`connecting, no server: exit ${code} after ${ms} ms`);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(STOP_LIMIT_MS);
    expect(count(agent, "stop")).toBe(1);
    expect(count(agent, "stop-timeout")).toBe(0);
  });

  it("positive control: the same command enrolls with a live server; then SIGTERM while reconnecting to the killed server, while connecting to it enrolled, and while connected", async () => {
    const site = await startSite({ basePort: 32310, hosts: [inventoryHost("hv1")] });
    cleanups.push(() => site.close());
    const stateDir = join(site.dir, "agents", "hv1");
    const nats = site.server.urls.join(",");
    const token = site.hostToken("hv1");
    let agent = await spawnCli({ nats, token, stateDir });
    await eventually(() => count(agent, "ready") === 1, "the agent enrolls and connects", 30_000).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(agent.events.slice(-8))}`);
    });
    expect(agent.events.find((e) => e.event === "ready")).toMatchObject({ host: "hv1" });
    expect((await site.cp.registry.get("hv1"))?.state).toBe("approved");

    // Reconnecting: the server killed under a connected agent.
    await site.server.kill("nf-1");
    await new Promise((r) => setTimeout(r, 1500));
    let stopped = await terminate(agent);
    console.log(`reconnecting to a killed server: exit ${stopped.code} after ${stopped.ms} ms`);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(STOP_LIMIT_MS);

    // Enrolled (credentials kept), started while the server is dead: connecting with its own credentials.
    agent = await spawnCli({ nats, token, stateDir });
    await eventually(() => count(agent, "connection-lost", (e) => e.during === "setup") >= 2, "refused attempts with its own credentials", 30_000);
    expect(count(agent, "enrolled")).toBe(0);
    stopped = await terminate(agent);
    console.log(`enrolled, connecting to a dead server: exit ${stopped.code} after ${stopped.ms} ms`);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(STOP_LIMIT_MS);

    // The server back: the agent connects with the credentials it kept, and stops when connected.
    await site.server.restart("nf-1");
    agent = await spawnCli({ nats, token, stateDir });
    await eventually(() => count(agent, "ready") === 1, "connected again", 30_000);
    stopped = await terminate(agent);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(STOP_LIMIT_MS);
    expect(count(agent, "stop")).toBe(1);
  });

  it("waiting for a welcome (a site join token: at most a pending claim), NATS reachable", async () => {
    const site = await startSite({ basePort: 32320, hosts: [inventoryHost("hv1")] });
    cleanups.push(() => site.close());
    const siteToken = `${site.enrollPassword}.${randomBytes(24).toString("base64url")}`;
    const agent = await spawnCli({ nats: site.server.urls.join(","), token: siteToken, stateDir: join(site.dir, "agents", "hv1") });
    await eventually(() => count(agent, "enroll-sent") >= 1, "facts sent", 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    const stopped = await terminate(agent);
    console.log(`waiting for approval: exit ${stopped.code} after ${stopped.ms} ms`);
    expect(stopped.code).toBe(0);
    expect(stopped.ms).toBeLessThan(STOP_LIMIT_MS);
    expect(count(agent, "ready")).toBe(0);
  });
});
