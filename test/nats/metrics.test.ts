/**
 * Prometheus metrics and levelled JSON logs (issue 16 point 8), on real
 * processes: `netfleet serve` (the CLI, with its own nats-server) and the
 * fleet agent (metrics-agent.ts: runFleetAgent on a simulated sysctl host;
 * and `netfleet-agent run` itself), scraped over HTTP. A reconnect is
 * forced by the kernel: `ss -K` destroys every client socket to serve's
 * NATS port (SOCK_DESTROY), as a cable pull or a NAT timeout would.
 * Ports: NATS 23400 (and 23401, nothing listening); metrics 9400 (serve),
 * 9402, 9403 (agents), 9471 (the agent's default, 127.0.0.1).
 */
import { execFile, spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { hostTokenKey, type ControlPlane } from "@netfleet/controller";
import { controllerOf, EventLog, hostToken, SITE, stopChild, until, writeInventory, type Child, type Serve, type ServeSecrets } from "./fuzz-fleet.ts";
import { assignmentFor } from "./harness.ts";
import { readJsonLines } from "../json-lines.ts";

const run = promisify(execFile);
const REPO = new URL("../..", import.meta.url).pathname;
const NATS_PORT = 23400;
const SERVE_METRICS = 9400;
const AGENT_METRICS = 9402;
const AGENT_DEFAULT_METRICS = 9471;

const dirs: string[] = [];
const children: Child[] = [];
const planes: ControlPlane[] = [];
afterAll(async () => {
  for (const cp of planes) await cp.close().catch(() => {});
  for (const c of children) await stopChild(c);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/**
 * `node <script> ...args` through scripts/node.sh (argv, no shell) with
 * NETFLEET_LOG_LEVEL as given ("" = unset for the product), collecting its
 * JSON lines and other output (fuzz-fleet.ts spawnChild, plus the environment).
 */
function spawnChild(name: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn("sh", [join(REPO, "scripts/node.sh"), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NETFLEET_LOG_LEVEL: "", ...env } });
  const log = new EventLog();
  const noise: string[] = [];
  readJsonLines(child.stdout!, (parsed, line) => {
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) log.push(parsed as Record<string, unknown>);
    else noise.push(line);
  });
  child.stderr!.on("data", (chunk: Buffer) => noise.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  children.push({ name, child, pid: child.pid!, events: log.events, log, noise, exited });
  return children.at(-1)!;
}

/** `netfleet serve` with `extra` flags on a fresh inventory and state dir; resolves on its ready line. */
async function startServe(dir: string, extra: string[]): Promise<Serve> {
  const url = `nats://127.0.0.1:${NATS_PORT}`;
  const inventoryDir = join(dir, "inventory");
  const stateDir = join(dir, "controller");
  await writeInventory(inventoryDir, url);
  const proc = spawnChild("serve", [join(REPO, "packages/controller/src/cli.ts"), "serve", inventoryDir, "--listen", `127.0.0.1:${NATS_PORT}`, "--state-dir", stateDir, ...extra]);
  await until(() => {
    if (proc.child.exitCode !== null) throw new Error(`netfleet serve exited ${proc.child.exitCode}: ${proc.noise.join("").slice(-2000)}`);
    return proc.events.some((e) => e.event === "ready");
  }, "netfleet serve prints its ready line", 40_000);
  const secrets = JSON.parse(await readFile(join(stateDir, "secrets.json"), "utf8")) as ServeSecrets;
  const natsPid = Number((await readFile(join(stateDir, "nats", "nf-1", "nats.pid"), "utf8")).trim());
  return { proc, url, stateDir, inventoryDir, secrets, natsPid, mintKey: await hostTokenKey(join(stateDir, "credentials")) };
}

/** GET /metrics on 127.0.0.1:port: the exposition text (status 200 and Prometheus's content type checked). */
async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one series (`name{labels}` exactly as exposed), or undefined when absent. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Waits until the series on `port` satisfies `ok`; returns the last text scraped. */
async function scrapeUntil(port: number, series: string, ok: (v: number) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
  let text = "";
  await until(async () => {
    text = await scrape(port);
    const v = value(text, series);
    return v !== undefined && ok(v);
  }, () => `${what}: ${series} = ${value(text, series)}`, timeoutMs);
  return text;
}

/** True when something accepts TCP connections on host:port. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host, port });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/** The local addresses of listening TCP sockets on `port` (ss -ltnH). */
async function listeners(port: number): Promise<string[]> {
  const { stdout } = await run("ss", ["-ltnH", `sport = :${port}`]);
  return stdout.trim().split("\n").filter(Boolean).map((l) => l.trim().split(/\s+/)[3]!);
}

async function scratch(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

describe("metrics and logs of serve and the agent (real processes, real nats-server)", () => {
  it("serve's and an agent's /metrics move with a reconcile, a drift repair and a forced reconnect; the agent logs debug lines at debug", async () => {
    const dir = await scratch("nf-metrics-");
    const serve = await startServe(dir, ["--metrics", `127.0.0.1:${SERVE_METRICS}`, "--log-level", "debug"]);
    expect(serve.proc.events.find((e) => e.event === "metrics-listening")).toMatchObject({ level: "info", url: `http://127.0.0.1:${SERVE_METRICS}/metrics` });
    expect(serve.proc.events[0]).toMatchObject({ event: "settings", level: "debug", metrics: `127.0.0.1:${SERVE_METRICS}`, logLevel: "debug", nodes: 1 });
    // Every serve line has a level and keeps its event key.
    expect(serve.proc.events.every((e) => typeof e.level === "string" && typeof e.event === "string")).toBe(true);

    const hostFile = join(dir, "host-hv1.json");
    const arg = {
      site: SITE,
      servers: [serve.url],
      enrollPassword: serve.secrets.enrollment.enrollPassword,
      token: hostToken(serve, "hv1"),
      name: "hv1",
      stateDir: join(dir, "agents", "hv1"),
      runDir: join(dir, "run", "hv1"),
      hostFile,
      metricsPort: AGENT_METRICS,
      logLevel: "debug",
      intervalMs: 500,
    };
    const agent = spawnChild("hv1", [join(REPO, "test/nats/metrics-agent.ts"), JSON.stringify(arg)]);
    await agent.log.waitFor((e) => e.event === "ready", "the agent connects", 30_000);
    expect(agent.events.find((e) => e.event === "metrics-listening")).toMatchObject({ url: `http://127.0.0.1:${AGENT_METRICS}/metrics` });
    const fresh = await scrape(AGENT_METRICS);
    expect(value(fresh, 'netfleet_agent_commands_total{program="sysctl"}')).toBeUndefined();
    expect(value(fresh, "netfleet_agent_nats_reconnects_total")).toBe(0);
    expect(value(fresh, "process_resident_memory_bytes")).toBeGreaterThan(0);

    // A rollout: the agent reconciles; its commands and pass are counted; serve sees the host at the desired revision.
    const cp = await controllerOf(serve);
    planes.push(cp);
    const first = await cp.publish(assignmentFor("hv1", 1));
    let text = await scrapeUntil(AGENT_METRICS, 'netfleet_agent_reconcile_duration_seconds_count{pass="full"}', (v) => v >= 1, "a full pass timed");
    text = await scrapeUntil(AGENT_METRICS, 'netfleet_agent_commands_total{program="sysctl"}', (v) => v >= 2, "the sysctl read and write counted");
    expect(value(text, 'netfleet_agent_commands_failed_total{program="sysctl"}') ?? 0).toBe(0);
    expect(text).not.toContain("arp_ignore"); // the program name only, never an argument
    let served = await scrapeUntil(SERVE_METRICS, "netfleet_rollout_hosts_at_desired", (v) => v === 1, "hv1 at the desired revision");
    expect(value(served, "netfleet_rollout_hosts_desired")).toBe(1);
    expect(value(served, "netfleet_rollout_hosts_failed")).toBe(0);
    expect(value(served, 'netfleet_hosts{state="approved"}')).toBe(1);
    expect(value(served, 'netfleet_hosts{state="unenrolled"}')).toBe(3); // gw1, hv2, hv3 never enrolled
    expect(value(served, 'netfleet_host_desired_revision{host="hv1"}')).toBe(first.revision);
    expect(value(served, 'netfleet_host_applied_revision{host="hv1"}')).toBe(first.revision);
    expect(value(served, "process_cpu_seconds_total")).toBeGreaterThan(0);

    // Drift behind the agent's back: the next pass changes it back, counted as a corrective change of kind sysctl.
    expect(value(text, 'netfleet_agent_corrective_changes_total{kind="sysctl"}')).toBeUndefined();
    await writeFile(hostFile, JSON.stringify({ "net.ipv4.conf.all.arp_ignore": "7" }));
    await scrapeUntil(AGENT_METRICS, 'netfleet_agent_corrective_changes_total{kind="sysctl"}', (v) => v === 1, "the repair counted");
    await scrapeUntil(SERVE_METRICS, 'netfleet_host_corrective_changes{host="hv1"}', (v) => v === 1, "serve reads the repair from the corrective bucket");

    // Debug lines (--log-level debug): one per command, and the quiet passes.
    expect(agent.events.find((e) => e.event === "command")).toMatchObject({ level: "debug", program: "sysctl", exitCode: 0 });
    expect(agent.events.find((e) => e.event === "settings")).toMatchObject({ level: "debug", metrics: `127.0.0.1:${AGENT_METRICS}`, logLevel: "debug" });

    // Forced reconnect: the kernel destroys every client socket to the NATS port (the agent's and serve's control plane).
    await cp.close();
    planes.splice(planes.indexOf(cp), 1);
    const agentBefore = value(await scrape(AGENT_METRICS), "netfleet_agent_nats_reconnects_total")!;
    const serveBefore = value(await scrape(SERVE_METRICS), "netfleet_nats_reconnects_total")!;
    const { stdout: killed } = await run("ss", ["-K", "-tnH", `dport = :${NATS_PORT}`]);
    expect(killed.trim().split("\n").filter(Boolean).length).toBeGreaterThanOrEqual(2);
    await scrapeUntil(AGENT_METRICS, "netfleet_agent_nats_reconnects_total", (v) => v === agentBefore + 1, "the agent counts its reconnect");
    await scrapeUntil(SERVE_METRICS, "netfleet_nats_reconnects_total", (v) => v >= serveBefore + 1, "serve counts its control plane's reconnect");
    await agent.log.waitFor((e) => e.event === "reconnected", "the agent logs its reconnect");
    expect(agent.child.exitCode).toBeNull();
    expect(serve.proc.child.exitCode).toBeNull();

    // After the reconnect the fleet works as before: a new revision reaches the agent and both sides count it.
    const commands = value(await scrape(AGENT_METRICS), 'netfleet_agent_commands_total{program="sysctl"}')!;
    const again = await controllerOf(serve);
    planes.push(again);
    const second = await again.publish(assignmentFor("hv1", 2));
    await scrapeUntil(SERVE_METRICS, 'netfleet_host_applied_revision{host="hv1"}', (v) => v === second.revision, "hv1 applied the next revision");
    served = await scrape(SERVE_METRICS);
    expect(value(served, "netfleet_rollout_hosts_at_desired")).toBe(1);
    expect(value(await scrape(AGENT_METRICS), 'netfleet_agent_commands_total{program="sysctl"}')).toBeGreaterThan(commands);
  });

  it("netfleet-agent run: /metrics on 127.0.0.1:9471 by default and on loopback only; debug lines only at debug (--log-level, NETFLEET_LOG_LEVEL)", async () => {
    const dir = await scratch("nf-metrics-cli-");
    const tokenFile = join(dir, "token");
    // A well-formed join token; nothing listens on the NATS port: the agent retries, which is all this test needs.
    await writeFile(tokenFile, "abcdefgh.0123456789abcdefXYZ\n");
    await chmod(tokenFile, 0o600);
    expect(await listeners(AGENT_DEFAULT_METRICS), `something else listens on ${AGENT_DEFAULT_METRICS}`).toEqual([]);
    const agentRun = (name: string, extra: string[], env: Record<string, string> = {}) => {
      const args = ["run", "--site", SITE, "--nats", "nats://127.0.0.1:23401", "--token-file", tokenFile, "--name", name, "--state-dir", join(dir, name, "state"), "--run-dir", join(dir, name, "run"), "--no-watch", ...extra];
      return spawnChild(name, [join(REPO, "packages/agent/src/cli.ts"), ...args], env);
    };

    // Defaults: metrics on 127.0.0.1:9471, level info (NETFLEET_LOG_LEVEL unset).
    const plain = agentRun("hv1", []);
    const listening = await plain.log.waitFor((e) => e.event === "metrics-listening", "the default metrics listener", 30_000);
    expect(listening).toMatchObject({ level: "info", url: `http://127.0.0.1:${AGENT_DEFAULT_METRICS}/metrics` });
    expect(await listeners(AGENT_DEFAULT_METRICS)).toEqual([`127.0.0.1:${AGENT_DEFAULT_METRICS}`]);
    expect(await accepts("127.0.0.1", AGENT_DEFAULT_METRICS)).toBe(true);
    // Control: an address of this host that is not loopback is refused on that port.
    const other = Object.values(networkInterfaces()).flat().find((a) => a && a.family === "IPv4" && !a.internal);
    if (other) expect(await accepts(other.address, AGENT_DEFAULT_METRICS), `${other.address}:${AGENT_DEFAULT_METRICS}`).toBe(false);
    expect(await scrape(AGENT_DEFAULT_METRICS)).toContain("netfleet_agent_info{version=");
    await plain.log.waitFor((e) => e.event === "connection-lost", "the agent tries the absent server");
    expect(plain.events.find((e) => e.event === "connection-lost")).toMatchObject({ level: "warn" });
    expect(plain.events.filter((e) => e.level === "debug")).toEqual([]);
    expect(plain.events.find((e) => e.event === "start")).toMatchObject({ level: "info", ts: expect.stringMatching(/Z$/) });
    await stopChild(plain);
    expect(plain.child.exitCode).toBe(0);
    expect(await listeners(AGENT_DEFAULT_METRICS)).toEqual([]);

    // --log-level debug: the debug lines are there; --metrics off: no listener.
    const flagged = agentRun("hv2", ["--log-level", "debug", "--metrics", "off"]);
    const settings = await flagged.log.waitFor((e) => e.event === "settings", "the debug settings line", 30_000);
    expect(settings).toMatchObject({ level: "debug", metrics: "off", logLevel: "debug" });
    expect(flagged.events.some((e) => e.event === "metrics-listening")).toBe(false);
    await stopChild(flagged);

    // NETFLEET_LOG_LEVEL=debug does the same without the flag (the flag beating it: log.test.ts resolveLogLevel).
    const byEnv = agentRun("hv3", ["--metrics", "9403"], { NETFLEET_LOG_LEVEL: "debug" });
    await byEnv.log.waitFor((e) => e.event === "settings" && e.level === "debug", "debug through NETFLEET_LOG_LEVEL", 30_000);
    await stopChild(byEnv);

    // A bad level is one line naming where it came from, nothing started.
    const bad = agentRun("hv5", ["--metrics", "off"], { NETFLEET_LOG_LEVEL: "chatty" });
    expect(await bad.exited).toBe(2);
    expect(bad.noise.join("").trim()).toBe('netfleet-agent run: NETFLEET_LOG_LEVEL: "chatty" is not a log level; want one of fatal, error, warn, info, debug, trace, silent');
    const badFlag = agentRun("hv6", ["--log-level", "loud"]);
    expect(await badFlag.exited).toBe(64);
    expect(badFlag.noise.join("")).toContain('--log-level: "loud" is not a log level');
    expect(badFlag.noise.join("")).not.toMatch(/\n\s+at /);
  });
});
