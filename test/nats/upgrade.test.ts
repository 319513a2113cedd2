/**
 * A fleet mid-upgrade, on a real nats-server: peers of the previous wire
 * protocol (commit 5a82fb1, tag wire-1.0, from the snapshot in upgrade/) with peers
 * of this tree, both ways, and a peer of another major refused.
 */
import { createPrivateKey, sign } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Rollout, type RolloutEvent, type RolloutTarget } from "@netfleet/controller";
import {
  AgentCredentials,
  NETFLEET_RELEASE,
  appliedBucket,
  PROTOCOL_VERSION,
  canonicalJson,
  decodeMessage,
  desiredBucket,
  heartbeatSubject,
  loadInventory,
  parseProtocolVersion,
  sealAssignment,
  type HostAssignment,
  type SigningKeys,
} from "@netfleet/shared";
import { SITE, eventually, inventoryHost, startAgent, startSimAgent, startSite, type SimAgent, type Site, type TestAgent } from "./harness.ts";
import { OLD_ENTRY_POINTS, extractOldTree, spawnTreeScript, stopTreeProcess, type Tree, type TreeProcess } from "./upgrade/old-tree.ts";

const ours = parseProtocolVersion(PROTOCOL_VERSION)!;
let old: Tree | undefined;
let site: Site | undefined;
const processes: TreeProcess[] = [];
const sims: SimAgent[] = [];
const agents: TestAgent[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  old = await extractOldTree();
}, 60_000);
afterAll(async () => old?.remove());
afterEach(async () => {
  for (const p of processes.splice(0)) await stopTreeProcess(p);
  for (const a of sims.splice(0)) await a.agent.stop();
  for (const a of agents.splice(0)) await a.client.stop();
  await site?.close();
  site = undefined;
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A sysctl-only assignment (what a simulated host can apply), generation `gen`. */
function sysctls(host: string, gen: number): HostAssignment {
  return sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host, role: "vmhost", resources: [{ kind: "sysctl", name: `net.sim.${host}`, value: String(gen) }] });
}

/** The old tree's simulated agent process (real engine, host state in a file under the site dir), enrolling with its host token. */
function oldSimAgent(s: Site, name: string): TreeProcess {
  // A host token minted for it, as an operator would give any agent; wire-1.0 facts carry any token string.
  const arg = { site: SITE, servers: s.server.urls, enrollPassword: s.enrollPassword, token: s.hostToken(name), name, stateDir: join(s.dir, "agents", name), hostFile: hostFile(s, name), heartbeatMs: 500, resyncMs: 1000 };
  const p = spawnTreeScript(old!.root, OLD_ENTRY_POINTS.simAgent, [JSON.stringify(arg)]);
  processes.push(p);
  return p;
}

const hostFile = (s: Site, name: string) => join(s.dir, `host-${name}.json`);
const oldHostValue = async (s: Site, name: string) => (JSON.parse(await readFile(hostFile(s, name), "utf8")) as Record<string, string>)[`net.sim.${name}`];

/** An envelope signed by the site's key as the signing rule says (every field but the signature), whatever its version. */
function forge(signing: SigningKeys, fields: Record<string, unknown>): Uint8Array {
  const body = { ...fields, keyId: signing.keyId };
  const signature = sign(null, Buffer.from(canonicalJson(body)), createPrivateKey(signing.privateKeyPem)).toString("base64");
  return new TextEncoder().encode(JSON.stringify({ ...body, signature }));
}

/** The host's last report as its agent wrote it to the applied KV (JSON as stored, with the sender's `protocol`). */
async function storedReport(s: Site, host: string): Promise<Record<string, unknown> | undefined> {
  const entry = await (await new Kvm(s.cp.nc).open(appliedBucket(SITE))).get(host);
  return entry?.value.length ? (JSON.parse(new TextDecoder().decode(entry.value)) as Record<string, unknown>) : undefined;
}

async function appliedRevision(s: Site, host: string): Promise<number | undefined> {
  return (await s.cp.status()).find((r) => r.host === host)?.applied?.revision;
}

/** A site of this tree with a wire-1.0 agent (hv1, a process) and an agent of this tree (hv2, the control), both enrolled. */
async function mixedSite(basePort: number): Promise<{ s: Site; oldAgent: TreeProcess; newAgent: SimAgent }> {
  const s = await startSite({ basePort, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
  site = s;
  const oldAgent = oldSimAgent(s, "hv1");
  const newAgent = startSimAgent(s, { hostname: "hv2", resyncMs: 1000 });
  sims.push(newAgent);
  await newAgent.started;
  await eventually(() => oldAgent.events.some((e) => e.event === "ready"), "the wire-1.0 agent is enrolled and ready", 30_000);
  return { s, oldAgent, newAgent };
}

describe("a fleet mid-upgrade (wire-1.0 peers with this tree's)", () => {
  it("this controller: a wire-1.0 agent enrolls, applies a rollout and reports, as this tree's agent beside it does", async () => {
    const { s, newAgent } = await mixedSite(31950);
    for (const host of ["hv1", "hv2"]) expect(await s.cp.registry.get(host)).toMatchObject({ state: "approved" });
    const events: RolloutEvent[] = [];
    const targets: RolloutTarget[] = ["hv1", "hv2"].map((host) => ({ host, role: "vmhost", assignment: sysctls(host, 1) }));
    const { result } = await new Rollout(s.cp, targets, { applyTimeoutMs: 20_000, batch: { percent: 100 } }, (e) => events.push(e)).run();
    expect(result, JSON.stringify(events.filter((e) => e.event === "host-done"))).toBe("success");
    expect((await s.cp.desired.read("hv1"))?.envelope).toMatchObject({ protocol: PROTOCOL_VERSION, release: NETFLEET_RELEASE });
    expect(await oldHostValue(s, "hv1")).toBe("1");
    // The wire-1.0 agent keeps the envelope as signed, with the fields it does not know (a restart verifies it again).
    const checkpoint = JSON.parse(await readFile(join(s.dir, "agents", "hv1", "checkpoint.json"), "utf8")) as { current: Record<string, unknown> };
    expect(checkpoint.current).toMatchObject({ protocol: PROTOCOL_VERSION, release: NETFLEET_RELEASE, revision: 1 });
    expect(newAgent.host.get("net.sim.hv2")).toBe("1");
    for (const host of ["hv1", "hv2"]) expect(await appliedRevision(s, host)).toBe(1);
    // Only the old tree writes 1.0: its report says so, this tree's agent's says ours.
    expect(await storedReport(s, "hv1")).toMatchObject({ protocol: "1.0", revision: 1 });
    expect(await storedReport(s, "hv2")).toMatchObject({ protocol: PROTOCOL_VERSION, revision: 1 });
  }, 120_000);

  it("a peer of another major is refused with the versions named and changes nothing; a newer minor with fields no one knows is applied", async () => {
    const { s, oldAgent, newAgent } = await mixedSite(31960);
    for (const host of ["hv1", "hv2"]) await s.cp.publish(sysctls(host, 1));
    await eventually(async () => (await appliedRevision(s, "hv1")) === 1 && (await appliedRevision(s, "hv2")) === 1, "revision 1 applied on both");
    const kv = await new Kvm(s.cp.nc).open(desiredBucket(SITE));
    const rejections = () => [...oldAgent.events, ...newAgent.events].filter((e) => e.event === "assignment-rejected");
    const signedAt = new Date().toISOString();

    for (const host of ["hv1", "hv2"]) await kv.put(host, forge(s.signing, { protocol: `${ours.major + 1}.0`, assignment: sysctls(host, 2), revision: 2, signedAt }));
    await eventually(() => rejections().length >= 2, "both agents refuse the other major");
    for (const e of rejections()) expect(String(e.error)).toMatch(new RegExp(`speaks protocol "${ours.major + 1}\\.0"; this peer understands ${ours.major}\\.x`));
    expect(await oldHostValue(s, "hv1")).toBe("1");
    expect(newAgent.host.get("net.sim.hv2")).toBe("1");

    // Positive control: a later minor of our major, with an envelope field and an assignment field neither peer knows, signed over both.
    const later = `${ours.major}.${ours.minor + 7}`;
    for (const host of ["hv1", "hv2"]) {
      const { hash: _hash, ...body } = { ...sysctls(host, 3), placement: "rack-4" };
      await kv.put(host, forge(s.signing, { protocol: later, assignment: sealAssignment(body as Omit<HostAssignment, "hash">), revision: 3, signedAt, rolloutNote: "from a later minor" }));
    }
    await eventually(async () => (await appliedRevision(s, "hv1")) === 3 && (await appliedRevision(s, "hv2")) === 3, "revision 3 of the later minor applied on both");
    expect(await oldHostValue(s, "hv1")).toBe("3");
    expect(newAgent.host.get("net.sim.hv2")).toBe("3");

    // The controller, from an enrolled agent's connection: a heartbeat of another major is refused, one of a later minor is read.
    const creds = decodeMessage(AgentCredentials, "creds", await readFile(join(s.dir, "agents", "hv2", "credentials.json"), "utf8"));
    const nc = await connect({ servers: s.server.urls, user: creds.user, pass: creds.password, inboxPrefix: creds.inboxPrefix });
    // Times far ahead, so status's lastSeen (the latest heard) shows which of the two was read.
    const heartbeat = { kind: "heartbeat", site: SITE, host: "hv2", agentVersion: "9.9.9", revision: 3, hash: null, uptimeS: 1 };
    const laterAt = "2099-01-01T00:00:00.000Z";
    const refusedBefore = s.events.filter((e) => /speaks protocol/.test(String(e.error))).length;
    nc.publish(heartbeatSubject(SITE, "hv2"), JSON.stringify({ protocol: `${ours.major + 1}.0`, ...heartbeat, at: "2100-01-01T00:00:00.000Z" }));
    nc.publish(heartbeatSubject(SITE, "hv2"), JSON.stringify({ protocol: later, ...heartbeat, at: laterAt, load: 0.5 }));
    await nc.flush();
    await eventually(() => s.events.filter((e) => /speaks protocol/.test(String(e.error))).length > refusedBefore, "the controller refuses the other major");
    await new Promise((r) => setTimeout(r, 500));
    const refused = s.events.filter((e) => /speaks protocol|Unrecognized key/.test(String(e.error))).slice(refusedBefore);
    expect(refused).toHaveLength(1);
    expect(String(refused[0]!.error)).toMatch(new RegExp(`heartbeat message speaks protocol "${ours.major + 1}\\.0"`));
    await eventually(async () => (await s.cp.status()).find((r) => r.host === "hv2")?.lastSeen === laterAt, "the controller read the later minor's heartbeat (and not the other major's)");
    await nc.close();
  }, 120_000);

  it("a wire-1.0 controller (serve and rollout of the old tree): this tree's agents enroll, apply and report", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "nf-upgrade-"));
    dirs.push(stateDir);
    const inventoryDir = join(old!.root, OLD_ENTRY_POINTS.labInventory);
    const serve = spawnTreeScript(old!.root, OLD_ENTRY_POINTS.controllerCli, ["serve", inventoryDir, "--state-dir", stateDir, "--listen", "127.0.0.1:31970"]);
    processes.push(serve);
    await eventually(() => serve.events.some((e) => e.event === "ready"), "the wire-1.0 controller serves", 30_000);
    const servers = serve.events.find((e) => e.event === "ready")!.nats as string[];
    const secrets = JSON.parse(await readFile(join(stateDir, "secrets.json"), "utf8")) as { enrollment: { enrollPassword: string; token: string } };
    const names = loadInventory(inventoryDir).hosts.map((h) => h.name);
    const asSite = { server: { urls: servers }, enrollPassword: secrets.enrollment.enrollPassword, dir: stateDir } as unknown as Site;
    for (const name of names) {
      const a = startAgent(asSite, {
        hostname: name,
        token: secrets.enrollment.token,
        onAssignment: async (assignment, revision) => {
          a.applied.push({ revision, hash: assignment.hash });
          return { summary: { ok: assignment.resources.length, changed: assignment.resources.length, failed: 0, pending: 0 }, results: assignment.resources.map((r) => ({ id: `${r.kind}[${r.name}]`, result: true })) };
        },
      });
      agents.push(a);
    }
    await Promise.all(agents.map((a) => a.started));
    expect(agents.map((a) => a.client.host)).toEqual(names);

    const rollout = spawnTreeScript(old!.root, OLD_ENTRY_POINTS.controllerCli, ["rollout", inventoryDir, "--state-dir", stateDir, "--json", "--timeout", "30"]);
    processes.push(rollout);
    const code = await rollout.exited;
    expect(code, JSON.stringify(rollout.events.slice(-5))).toBe(0);
    expect(rollout.events.find((e) => e.event === "done")).toMatchObject({ result: "success", ok: names, failed: [] });
    for (const a of agents) expect(a.applied).toHaveLength(1);
    // Only the old controller signs 1.0 envelopes, without 1.1's release; this tree's agents keep them as signed.
    for (const a of agents) {
      const envelope = JSON.parse(JSON.stringify(a.client.current)) as Record<string, unknown>;
      expect(envelope).toMatchObject({ protocol: "1.0", revision: 1 });
      expect(envelope).not.toHaveProperty("release");
    }
  }, 120_000);
});
