/**
 * Agent upgrades in waves (issue 15 point 9), with real agents: three
 * `agent.mjs supervise agent.json` processes, each the real bundle of this
 * tree (buildAgentBundle) on a real nats-server, upgraded through the
 * object store by runAgentRollout, the code behind
 * `netfleet rollout SITE --agent-bundle FILE`. Attacks (each looked for at
 * its target: the bundle files on disk, the agent's run.<host> record, its
 * log), then the positive control:
 *   1. a target whose manifest is signed by another key: refused, nothing written;
 *   2. one byte of the stored bundle changed after upload: the canary refuses it,
 *      the rollout fails at the canary and the other hosts are never touched;
 *   3. a bundle that crashes at start: the canary's supervisor puts the
 *      previous bundle back, the rollout stops at the canary;
 *   4. the good bundle, through `netfleet rollout --agent-bundle` on the lab
 *      inventory: canary then waves, every host reports the new version;
 *   5. `netfleet keys rotate`: the next upgrade, signed by the new key only, is
 *      taken (learned from the chain); after `keys retire`, a target signed by
 *      the old key is refused (no longer trusted), nothing written;
 *   6. kill -9 of a supervisor: its agent (found by pid in /proc) is gone
 *      within 2 s; every stop in afterAll checks the same by pid and kills
 *      by pid whatever child would survive.
 * Ports 25700-25709.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane, HostStatus } from "@netfleet/controller";
import { bundleObjectName, generateSigningKeys, signManifest, signTarget, type AgentRunning, type SigningKeys } from "@netfleet/shared";
import { buildAgentBundle, type AgentBundle } from "../../packages/controller/src/bootstrap/bundle.ts";
import { AgentUpgradeStore, MANIFEST_METADATA_KEY } from "../../packages/controller/src/store/objects.ts";
import { runAgentRollout } from "../../packages/controller/src/rollout/agent.ts";
import type { RolloutEvent } from "../../packages/controller/src/rollout/events.ts";
import { readJsonLines } from "../json-lines.ts";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { SITE, eventually, inventoryHost, startSite, writeControllerHome, type Site } from "./harness.ts";

/** The lab inventory's hosts (inventories/lab), so the positive control runs through `netfleet rollout` on it. */
const HOSTS = ["backend", "hosta", "hostb"];
const REPO = new URL("../..", import.meta.url).pathname;
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

interface Agent {
  host: string;
  dir: string;
  bundle: string;
  child: ChildProcess;
  events: Record<string, unknown>[];
  exited: Promise<void>;
}

let dir: string;
let stateDir: string;
let site: Site;
let cp: ControlPlane;
let signing: SigningKeys;
let store: AgentUpgradeStore;
let base: AgentBundle;
let good: AgentBundle;
let crash: Buffer;
const agents = new Map<string, Agent>();

function startAgent(host: string): Agent {
  const d = join(dir, "upgrade-agents", host);
  const bundle = join(d, "agent.mjs");
  const child = spawn(process.execPath, [bundle, "supervise", join(d, "agent.json")], { stdio: ["ignore", "pipe", "pipe"], cwd: d });
  const events: Record<string, unknown>[] = [];
  readJsonLines(child.stdout!, (parsed, line) => events.push(parsed === undefined ? { event: "stdout", line } : (parsed as Record<string, unknown>)));
  child.stderr!.on("data", (b: Buffer) => events.push({ event: "stderr", line: b.toString() }));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return { host, dir: d, bundle, child, events, exited };
}

/**
 * SIGTERM to the supervisor (SIGKILL after 12 s); then its children, found
 * by pid before the signal, must be gone within 2 s (a SIGKILLed supervisor
 * takes its agent along: setpriv --pdeathsig). Whatever of them survives is
 * SIGKILLed by pid (only if its command line still names this agent's dir)
 * and reported by the throw.
 */
async function stopAgent(a: Agent): Promise<void> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return;
  const kids = childrenOf(a.child.pid!);
  a.child.kill("SIGTERM");
  const t = setTimeout(() => a.child.kill("SIGKILL"), 12_000);
  await a.exited;
  clearTimeout(t);
  await reaped(a, kids);
}

/** The pids whose parent is `pid` (proc(5) stat field 4), read now. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(Number(e));
    if (st && Number(st.split(" ")[1]) === pid) out.push(Number(e));
  }
  return out;
}

/** The part of /proc/PID/stat after the command's ")": state, ppid, ...; undefined when gone. */
function procStat(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2);
  } catch {
    return undefined;
  }
}

/** The process exists and is not a zombie (a killed orphan waits in Z until init reaps it). */
const alive = (pid: number) => (procStat(pid) ?? "Z").slice(0, 1) !== "Z";

/** Waits up to 2 s for `kids` of `a`'s ended supervisor to be gone; SIGKILLs by pid what is left of them and throws naming it. */
async function reaped(a: Agent, kids: number[]): Promise<void> {
  const deadline = Date.now() + 2000;
  while (kids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const left = kids.filter((pid) => alive(pid) && (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(a.dir) || readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(a.bundle)));
  for (const pid of left) process.kill(pid, "SIGKILL");
  if (left.length) throw new Error(`${a.host}: pid ${left.join(", ")} outlived its supervisor pid ${a.child.pid} (killed now)`);
}

const running = (host: string) => store.running(host);
const onDisk = (a: Agent, suffix = "") => (existsSync(a.bundle + suffix) ? sha(readFileSync(a.bundle + suffix)) : undefined);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "upgrade-nats-"));
  // Three real bundles of this tree: what the agents run, the upgrade, and one that dies at start.
  [base, good] = await Promise.all([buildAgentBundle({ version: "0.1.0-upa" }), buildAgentBundle({ version: "0.1.1-upb" })]);
  // The upgrade's code with a first statement that ends the process (the manifest calls it 0.1.2-crash).
  crash = Buffer.concat([Buffer.from('process.stderr.write("crash at start\\n"); process.exit(7);\n'), good.code]);

  site = await startSite({ basePort: 25700, hosts: HOSTS.map((h) => (h === "backend" ? { ...inventoryHost(h), role: "backend" as const } : inventoryHost(h))) });
  ({ cp, signing } = site);
  store = await AgentUpgradeStore.open(cp.nc, SITE, { replicas: 1 });

  for (const host of HOSTS) {
    const d = join(dir, "upgrade-agents", host);
    await mkdir(join(d, "state"), { recursive: true, mode: 0o700 });
    await writeFile(join(d, "agent.mjs"), base.code, { mode: 0o644 });
    // Each host enrolls with its own host token (approved at once), as bootstrap gives it.
    await writeFile(join(d, "agent.json"), JSON.stringify({ site: SITE, nats: site.server.urls, token: site.hostToken(host), name: host, stateDir: join(d, "state"), runDir: join(d, "run") }), { mode: 0o600 });
    agents.set(host, startAgent(host));
  }
  await eventually(async () => {
    const runs = await Promise.all(HOSTS.map(running));
    return runs.every((r) => r?.version === "0.1.0-upa" && r.state === "running" && r.sha256 === base.sha256);
  }, "three agents enrolled and reporting 0.1.0-upa", 30_000);
}, 60_000);

afterAll(async () => {
  if (process.env.UPGRADE_DEBUG) for (const a of agents.values()) process.stdout.write(`--- ${a.host}\n${a.events.map((e) => JSON.stringify(e)).join("\n")}\n`);
  const failures: string[] = [];
  for (const a of agents.values()) await stopAgent(a).catch((err: unknown) => failures.push((err as Error).message));
  await site?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  expect(failures).toEqual([]);
});

describe("agent upgrades in waves, through the object store, with real agents", () => {
  it("refuses a target whose manifest is signed by another key: logged, reported, nothing written", async () => {
    const a = agents.get("hosta")!;
    const attacker = generateSigningKeys();
    const manifest = signManifest(SITE, good.code, "0.1.1-upb", attacker.privateKeyPem);
    await store.putBundle(good.code, manifest);
    // The whole target signed by the other key, as an attacker able to write the bucket would.
    const target = signTarget("hosta", manifest, 30, attacker.privateKeyPem);
    await store.setTarget(target);
    await eventually(async () => (await running("hosta"))?.state === "refused", "hosta reports refused", 15_000);
    const r = (await running("hosta"))!;
    expect(r).toMatchObject({ state: "refused", version: "0.1.0-upa", sha256: base.sha256 });
    expect(r.reason).toMatch(/^unknown-key: .*signed by unknown key/);
    expect(a.events.some((e) => e.event === "upgrade-refused" && e.reason === "unknown-key")).toBe(true);
    // At the target: the running bundle is unchanged and nothing was staged.
    expect(onDisk(a)).toBe(base.sha256);
    expect(existsSync(a.bundle + ".next")).toBe(false);
    expect(existsSync(a.bundle + ".upgrade.json")).toBe(false);
    // Set back to what it runs, signed by the controller (the positive control of the same host follows below).
    const back = signManifest(SITE, base.code, "0.1.0-upa", signing.privateKeyPem);
    await store.setTarget(signTarget("hosta", back, 30, signing.privateKeyPem));
    await eventually(async () => (await running("hosta"))?.state === "running", "hosta running again", 15_000);
  });

  it("a stored bundle with one byte changed is refused by the canary: the rollout fails there, no host is touched", async () => {
    const events: RolloutEvent[] = [];
    // The attack: right after the controller stored the bundle, one byte of it changes in the object store.
    const tampering = Object.assign(Object.create(store) as AgentUpgradeStore, {
      putBundle: async (code: Uint8Array, manifest: Parameters<AgentUpgradeStore["putBundle"]>[1]) => {
        await store.putBundle(code, manifest);
        const bad = Buffer.from(code);
        bad[bad.length >> 1]! ^= 0x01;
        await store.objects.putBlob({ name: manifest.object, metadata: { [MANIFEST_METADATA_KEY]: JSON.stringify(manifest) } }, bad);
      },
    });
    const out = await runAgentRollout({ site: SITE, upgrades: tampering, lock: cp.lock, signing }, HOSTS.map((host) => ({ host, role: "vmhost" })), { code: good.code, version: "0.1.1-upb" }, { batch: { count: 1 }, hostTimeoutMs: 20_000, trialS: 30 }, (e) => events.push(e));
    expect(out.result).toBe("failed");
    const canary = (events.find((e) => e.event === "wave") as { hosts: string[] }).hosts[0]!;
    expect(canary).toBe("backend");
    expect(events).toContainEqual(expect.objectContaining({ event: "budget-exceeded", canary: true }));
    expect(events.find((e) => e.event === "host-done" && e.host === "backend")).toMatchObject({ ok: false, error: expect.stringMatching(/^refused: sha256-mismatch: .*sha256 [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}/) });
    // At the target: the canary runs its old bundle, staged nothing; the others never got a target.
    const a = agents.get("backend")!;
    expect(a.events.some((e) => e.event === "upgrade-refused" && e.reason === "sha256-mismatch")).toBe(true);
    expect(onDisk(a)).toBe(base.sha256);
    expect(existsSync(a.bundle + ".next")).toBe(false);
    expect(existsSync(a.bundle + ".prev")).toBe(false);
    expect(events.filter((e) => e.event === "host-start").map((e) => (e as { host: string }).host)).toEqual(["backend"]);
    for (const h of ["hosta", "hostb"]) {
      expect(onDisk(agents.get(h)!)).toBe(base.sha256);
      expect((await running(h))?.version).toBe("0.1.0-upa");
    }
    // It had no earlier target (its bundle came from bootstrap): the target is withdrawn, nothing re-signed; it never left 0.1.0-upa.
    expect(await running("backend")).toMatchObject({ version: "0.1.0-upa", sha256: base.sha256 });
    expect(await store.target("backend")).toBeUndefined();
    expect(events).toContainEqual(expect.objectContaining({ event: "host-reverted", host: "backend", ok: true }));
  }, 45_000);

  it("a bundle that crashes at start is put back on the canary by its supervisor, and the rollout stops there", async () => {
    const events: RolloutEvent[] = [];
    const a = agents.get("backend")!;
    const supervisor = a.child.pid;
    const out = await runAgentRollout({ site: SITE, upgrades: store, lock: cp.lock, signing }, HOSTS.map((host) => ({ host, role: "vmhost" })), { code: crash, version: "0.1.2-crash" }, { batch: { count: 1 }, hostTimeoutMs: 30_000, trialS: 20 }, (e) => events.push(e));
    expect(out.result).toBe("failed");
    expect(events.find((e) => e.event === "host-done" && e.host === "backend")).toMatchObject({ ok: false, error: expect.stringMatching(/^reverted: version 0\.1\.2-crash exited with code 7 .*before it reported/) });
    expect(events).toContainEqual(expect.objectContaining({ event: "host-reverted", host: "backend", ok: true }));
    expect(events.filter((e) => e.event === "host-start").map((e) => (e as { host: string }).host)).toEqual(["backend"]);
    // At the target: the supervisor (same pid) staged, tried and put back; the crashing bundle is kept aside.
    expect(a.child.pid).toBe(supervisor);
    expect(a.child.exitCode).toBeNull();
    expect(a.events.some((e) => e.event === "upgrade-staged" && e.to === "0.1.2-crash")).toBe(true);
    expect(a.events.some((e) => e.event === "upgrade-reverted" && String(e.reason).includes("exited with code 7"))).toBe(true);
    expect(onDisk(a)).toBe(base.sha256);
    expect(onDisk(a, ".failed")).toBe(sha(crash));
    expect(statSync(a.bundle).mode & 0o777).toBe(0o644);
    expect(await running("backend")).toMatchObject({ version: "0.1.0-upa", sha256: base.sha256 });
    for (const h of ["hosta", "hostb"]) expect(onDisk(agents.get(h)!)).toBe(base.sha256);
  }, 60_000);

  it("positive control, through netfleet rollout --agent-bundle: canary then waves, each host restarting into 0.1.1-upb and reporting it", async () => {
    stateDir = await writeControllerHome(site, join(REPO, "inventories", "lab"));
    const file = join(dir, "release", "agent.mjs");
    await mkdir(join(dir, "release"), { recursive: true });
    await writeFile(file, good.code, { mode: 0o644 });
    const t0 = Date.now();
    const out = memoryOutput(true);
    // No --agent-version: the version is what the bundle says (node FILE --version).
    const code = await main(["rollout", join(REPO, "inventories", "lab"), "--agent-bundle", file, "--yes", "--batch", "1", "--timeout", "30", "--trial", "30", "--state-dir", stateDir, "--json"], out);
    const events = out.stdout.map((l) => JSON.parse(l) as RolloutEvent);
    expect(code, out.stderr.join("\n")).toBe(0);
    expect(events.find((e) => e.event === "agent-bundle")).toMatchObject({ version: "0.1.1-upb", sha256: good.sha256, size: good.code.length });
    expect(events.filter((e) => e.event === "wave").map((e) => (e as { hosts: string[] }).hosts)).toEqual([["backend"], ["hosta"], ["hostb"]]);
    expect(events.at(-1)).toMatchObject({ event: "done", result: "success", ok: HOSTS });
    for (const host of HOSTS) {
      const a = agents.get(host)!;
      const r = (await running(host)) as AgentRunning;
      expect(r).toMatchObject({ version: "0.1.1-upb", sha256: good.sha256, size: good.code.length, state: "running" });
      expect(onDisk(a)).toBe(good.sha256);
      expect(onDisk(a, ".prev")).toBe(base.sha256);
      expect(statSync(a.bundle).mode & 0o777).toBe(0o644);
      expect(JSON.parse(readFileSync(a.bundle + ".upgrade.json", "utf8"))).toMatchObject({ state: "committed", to: { version: "0.1.1-upb" } });
      expect(a.events.some((e) => e.event === "upgrade-committed" && e.version === "0.1.1-upb")).toBe(true);
      // The same supervisor process all along.
      expect(a.child.exitCode).toBeNull();
    }
    // netfleet status (human and --json) shows the version each host runs. Its exit code is 1 (drift): no
    // assignment was rolled out to these hosts, only an agent bundle (status is a monitoring check).
    const json = memoryOutput(true);
    expect(await main(["status", join(REPO, "inventories", "lab"), "--state-dir", stateDir, "--json"], json)).toBe(1);
    const rows = (JSON.parse(JSON.stringify(json.values[0])) as { hosts: HostStatus[] }).hosts;
    for (const host of HOSTS) expect(rows.find((r) => r.host === host)?.agent).toMatchObject({ version: "0.1.1-upb", sha256: good.sha256, state: "running" });
    const text = memoryOutput(false);
    expect(await main(["status", join(REPO, "inventories", "lab"), "--state-dir", stateDir], text)).toBe(1);
    for (const host of HOSTS) expect(text.stdout.find((l) => l.startsWith(host))).toContain("0.1.1-upb");
    // The object store holds it under its name, its signed manifest in the metadata.
    const info = await store.objects.info(bundleObjectName("0.1.1-upb", good.sha256));
    expect(info?.size).toBe(good.code.length);
    expect(JSON.parse(info!.metadata![MANIFEST_METADATA_KEY]!)).toMatchObject({ version: "0.1.1-upb", sha256: good.sha256, keyId: signing.keyId });
    process.stdout.write(`upgrade-agent: 3 hosts upgraded in ${Date.now() - t0} ms\n`);
  }, 60_000);

  it("follows a signing-key rotation like assignments: the new key's upgrade is taken, the retired key's target is refused", async () => {
    const keys = async (...args: string[]) => {
      const out = memoryOutput(true);
      expect(await main(["keys", ...args, "--state-dir", stateDir, "--json"], out), out.stderr.join("\n")).toBe(0);
    };
    const oldKey = signing;
    await keys("rotate", "--overlap", "1h");
    // Back to 0.1.0-upa through the CLI, signed by the new key only (agents learn it from the chain).
    const file = join(dir, "release", "agent-0.1.0-upa.mjs");
    await writeFile(file, base.code, { mode: 0o644 });
    const out = memoryOutput(true);
    const code = await main(["rollout", join(REPO, "inventories", "lab"), "--agent-bundle", file, "--yes", "--agent-version", "0.1.0-upa", "--batch", "2", "--timeout", "30", "--trial", "30", "--state-dir", stateDir, "--json"], out);
    expect(code, out.stderr.join("\n") + out.stdout.join("\n")).toBe(0);
    for (const host of HOSTS) expect(await running(host)).toMatchObject({ version: "0.1.0-upa", sha256: base.sha256, state: "running" });

    // The old key retired; then a target signed with it (whoever still holds it) is refused, nothing written.
    await keys("retire");
    const a = agents.get("hosta")!;
    const before = onDisk(a);
    await store.setTarget(signTarget("hosta", signManifest(SITE, good.code, "0.1.1-upb", oldKey.privateKeyPem), 30, oldKey.privateKeyPem));
    await eventually(async () => (await running("hosta"))?.state === "refused", "hosta refuses the retired key's target", 15_000);
    // A retirement link drops the key from the trusted set at once (shared signing.ts followChain): unknown from then on.
    expect((await running("hosta"))!.reason).toMatch(new RegExp(`^(retired|unknown)-key: .*signed by (retired|unknown) key ${oldKey.keyId}`));
    expect(a.events.some((e) => e.event === "upgrade-refused" && (e.reason === "retired-key" || e.reason === "unknown-key"))).toBe(true);
    expect(onDisk(a)).toBe(before);
    expect(existsSync(a.bundle + ".next")).toBe(false);
  }, 60_000);

  it("a SIGKILLed supervisor takes its agent along: no child of it survives (by pid)", async () => {
    const a = agents.get("hostb")!;
    const kids = childrenOf(a.child.pid!);
    // At the target: the supervisor runs exactly one child, the agent (setpriv exec'd node: `node agent.mjs config-run`).
    expect(kids).toHaveLength(1);
    expect(readFileSync(`/proc/${kids[0]}/cmdline`, "utf8").split("\0")).toEqual(expect.arrayContaining([a.bundle, "config-run"]));
    expect(alive(kids[0]!)).toBe(true);
    a.child.kill("SIGKILL");
    await a.exited;
    const t0 = Date.now();
    await reaped(a, kids); // throws (after killing it by pid) when the agent outlives its supervisor by 2 s
    console.log(`hostb's agent gone ${Date.now() - t0} ms after its supervisor's SIGKILL was reaped`);
    // Control: the other supervisors still run their agents.
    for (const host of ["backend", "hosta"]) expect(childrenOf(agents.get(host)!.child.pid!).filter(alive)).toHaveLength(1);
  }, 20_000);
});
