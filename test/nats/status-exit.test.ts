/**
 * `netfleet status` as a monitoring check, against a real nats-server and fleet members: its exit code is 0 when
 * every inventory host converged, 1 on drift or failure, 2 when a host is unreachable (over 1), 3 when the status
 * cannot be read (NATS down: it fails fast, names the URL and what to do, no stack trace, JSON on stderr with
 * --json); --limit scopes it. The read-only commands (status, hosts, audit) leave the state dir byte-identical,
 * and a missing state dir stays missing. NATS client ports 23390 and 23392 (monitoring +200: 23590, 23592).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ControlPlane, NatsServer, controllerUser, enrollmentUser, hostTokenKey, mintHostTokenWithKey } from "@netfleet/controller";
import { generateSigningKeys, loadInventory } from "@netfleet/shared";
import type { PassResult } from "@netfleet/agent";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { SITE, TOKEN, assignmentFor, eventually, startAgent, writeControllerHome, type Site, type TestAgent } from "./harness.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const INVENTORY = join(REPO, "inventories", "lab");
let site: Site | undefined;
const agents: TestAgent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.client.stop().catch(() => {});
  await site?.close().catch(() => {});
  site = undefined;
});

/**
 * harness startSite, but with the registry's lastSeen written at every heartbeat (lastSeenWriteMs 100 instead of
 * 30 s): `netfleet status` is its own process and sees presence only through the registry, so a short
 * --unreachable-after needs fresh records.
 */
async function startFreshSite(basePort: number): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), "nf-status-"));
  const password = randomBytes(18).toString("base64url");
  const enrollPassword = randomBytes(18).toString("base64url");
  const server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort, users: [controllerUser("controller", password), enrollmentUser(SITE, enrollPassword)] });
  const signing = generateSigningKeys();
  const credentialsDir = join(dir, "credentials");
  const mintKey = await hostTokenKey(credentialsDir);
  const cp = await ControlPlane.connect({
    site: SITE,
    servers: server.urls,
    user: "controller",
    password,
    hosts: loadInventory(INVENTORY).hosts,
    enrollmentToken: TOKEN,
    enrollmentPassword: enrollPassword,
    signing,
    credentialsDir,
    userDirectory: server,
    lastSeenWriteMs: 100,
  });
  await cp.serve();
  return {
    dir,
    server,
    cp,
    signing,
    enrollPassword,
    controllerPassword: password,
    events: [],
    credentialsDir,
    hostToken: (host, ttlMs) => mintHostTokenWithKey(mintKey, { site: SITE, enrollPassword, host, ...(ttlMs !== undefined ? { ttlMs } : {}) }).token,
    async close() {
      await cp.close().catch(() => {});
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every file under `dir` with its mode, size, mtime and bytes: two equal snapshots mean nothing was written. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const path = join(dir, name);
    const st = await stat(path);
    out[name] = `${st.mode.toString(8)} ${st.size} ${st.mtimeMs}${st.isFile() ? ` ${(await readFile(path)).toString("base64")}` : ""}`;
  }
  return out;
}

/** `netfleet ARGS` through main, as the CLI runs it: the exit code and what it printed. */
async function netfleet(...args: string[]): Promise<{ code: number; doc: { exitCode: number; hosts: { host: string; health: string }[]; health: Record<string, number> }; text: string[]; errors: string[] }> {
  const json = args.includes("--json");
  const out = memoryOutput(json);
  const code = await main(args, out);
  return { code, doc: JSON.parse(JSON.stringify(out.values[0] ?? null)) as never, text: out.stdout, errors: out.stderr };
}

/** The CLI as its own process: exit code, stdout, stderr and how long it took (ms). */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const child = spawn("sh", [join(REPO, "scripts/node.sh"), join(REPO, "packages/controller/src/cli.ts"), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr, ms: Date.now() - started })));
}

describe("netfleet status: exit codes for monitoring, --limit, read-only", () => {
  it("0 converged, 1 failure, 2 unreachable (wins over 1), scoped by --limit; the state dir is left byte-identical", async () => {
    site = await startFreshSite(23390);
    let failHostb = false;
    const failed: PassResult = { summary: { ok: 0, changed: 0, failed: 1, pending: 0 }, results: [{ id: "sysctl[net.ipv4.conf.all.arp_ignore]", result: false, comment: "write failed" }] };
    for (const name of ["backend", "hosta", "hostb"]) {
      const a = startAgent(site, {
        hostname: name,
        // One heartbeat a second (each one a registry write here): few writes, until store/kv.ts snapshot() no longer
        // misses a key written while it starts (asked of the lead), which would show a host as unenrolled.
        heartbeatMs: 1000,
        ...(name === "hostb"
          ? {
              onAssignment: async (assignment, revision) => {
                a.applied.push({ revision, hash: assignment.hash });
                return failHostb ? failed : { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true }] };
              },
            }
          : {}),
      });
      agents.push(a);
    }
    await Promise.all(agents.map((a) => a.started));
    const cp = site.cp;
    for (const name of ["backend", "hosta", "hostb"]) await cp.publish(assignmentFor(name, 1));
    await eventually(async () => (await Promise.all(["backend", "hosta", "hostb"].map((h) => cp.lastApplied(h)))).every((r) => r?.revision !== undefined && r.summary.failed === 0), "every host applied revision 1", 20_000);
    const stateDir = await writeControllerHome(site, INVENTORY);
    const before = await snapshot(stateDir);

    const ok = await netfleet("status", "--state-dir", stateDir, "--json");
    expect(ok.errors).toEqual([]);
    expect(ok.code).toBe(0);
    expect(ok.doc.exitCode).toBe(0);
    expect(ok.doc.hosts.map((h) => [h.host, h.health])).toEqual([["backend", "converged"], ["hosta", "converged"], ["hostb", "converged"]]);
    const text = await netfleet("status", "--state-dir", stateDir);
    expect(text.code).toBe(0);
    expect(text.text.at(-1)).toBe("health: 3/3 converged (exit 0)");
    const one = await netfleet("status", "--state-dir", stateDir, "--limit", "hosta", "--json");
    expect([one.code, one.doc.hosts.map((h) => h.host)]).toEqual([0, ["hosta"]]);

    // hostb's next apply fails: 1, and the hosts without it are still 0.
    failHostb = true;
    await cp.publish(assignmentFor("hostb", 2));
    await eventually(async () => (await cp.lastApplied("hostb"))?.summary.failed === 1, "hostb reported its failure", 20_000);
    const drift = await netfleet("status", "--state-dir", stateDir, "--json");
    expect(drift.code).toBe(1);
    expect(drift.doc.hosts.find((h) => h.host === "hostb")?.health).toBe("failed");
    expect((await netfleet("status", "--state-dir", stateDir)).text.at(-1)).toBe("health: 2/3 converged; failed: hostb (exit 1)");
    expect((await netfleet("status", "--state-dir", stateDir, "--limit", "!hostb", "--json")).code).toBe(0);
    expect((await netfleet("status", "--state-dir", stateDir, "--limit", "vmhost:!hostb", "--json")).doc.hosts.map((h) => h.host)).toEqual(["hosta"]);

    // hosta's agent stops: past --unreachable-after it is unreachable, 2 over hostb's 1; --limit hostb alone is 1.
    await agents[1]!.client.stop();
    await new Promise((r) => setTimeout(r, 8000));
    const down = await netfleet("status", "--state-dir", stateDir, "--unreachable-after", "6", "--json");
    expect(down.code).toBe(2);
    expect(down.doc.hosts.map((h) => [h.host, h.health])).toEqual([["backend", "converged"], ["hosta", "unreachable"], ["hostb", "failed"]]);
    expect(down.doc.health).toEqual({ converged: 1, unreachable: 1, failed: 1 });
    expect((await netfleet("status", "--state-dir", stateDir, "--unreachable-after", "6", "--limit", "hostb")).code).toBe(1);
    // A --limit matching nothing is a usage error (64), naming the term, not a health.
    const typo = await netfleet("status", "--state-dir", stateDir, "--limit", "hostz");
    expect([typo.code, typo.errors]).toEqual([64, ["netfleet status: --limit hostz: matches no host, group, role or label of site lab"]]);

    // Read-only: status (above), hosts and audit wrote nothing to the state dir.
    expect((await netfleet("hosts", "--state-dir", stateDir, "--json")).code).toBe(0);
    expect((await netfleet("audit", "vma1", INVENTORY, "--state-dir", stateDir, "--json")).code).toBe(0);
    expect(await snapshot(stateDir)).toEqual(before);
  }, 120_000);

  it("NATS down: 3 within seconds as a process, one line naming the URL and what to do, no stack; --json: a JSON line on stderr; a missing state dir stays missing", async () => {
    site = await startFreshSite(23392);
    const stateDir = await writeControllerHome(site, INVENTORY);
    const url = site.server.urls[0]!;
    await site.cp.close();
    await site.server.stop();
    const before = await snapshot(stateDir);

    const text = await cli(["status", "--state-dir", stateDir]);
    expect(text.code).toBe(3);
    expect(text.stdout).toBe("");
    expect(text.stderr).toBe(
      `netfleet status: cannot use NATS at ${url} (recorded by serve in ${stateDir}): connection refused (nothing listens there). ` +
        `Is netfleet serve running? Start it (netfleet serve <site-dir> --state-dir ${stateDir}), or pass --nats URL[,URL...] of the servers it runs\n`,
    );
    const json = await cli(["status", "--state-dir", stateDir, "--json"]);
    expect(json.code).toBe(3);
    expect(json.stdout).toBe("");
    expect(json.stderr.split("\n")).toHaveLength(2);
    expect(JSON.parse(json.stderr)).toEqual({ error: text.stderr.trimEnd() });
    // hosts has no health codes: the same line, exit 1.
    const hosts = await cli(["hosts", "--state-dir", stateDir, "--json"]);
    expect([hosts.code, JSON.parse(hosts.stderr)]).toEqual([1, { error: text.stderr.trimEnd().replace("netfleet status:", "netfleet hosts:") }]);
    for (const r of [text, json, hosts]) expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await snapshot(stateDir)).toEqual(before);

    // No state dir at all: the commands say so (3 for status) and create nothing.
    const missing = join(site.dir, "no-such-state");
    const none = await netfleet("status", "--state-dir", missing, "--json");
    expect([none.code, none.errors]).toEqual([3, [`netfleet status: no controller state in ${missing}: start netfleet serve <site-dir> --state-dir ${missing} first (or pass --state-dir)`]]);
    await expect(main(["hosts", "--state-dir", missing], memoryOutput(false))).rejects.toThrow(/no controller state/);
    await expect(main(["audit", "vma1", INVENTORY, "--state-dir", missing], memoryOutput(false))).rejects.toThrow(/no controller state/);
    expect(existsSync(missing)).toBe(false);
    // Measured with the CLI's start (a cold TypeScript load on a busy machine takes seconds): well under the old 12 s wait.
    expect(Math.max(text.ms, json.ms)).toBeLessThan(20_000);
  }, 120_000);
});
