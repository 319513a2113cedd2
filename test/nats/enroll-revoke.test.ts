/**
 * `netfleet hosts revoke|rekey HOST` against a real nats-server, through the
 * admin RPC of the serving controller (what the CLI sends). Looked for at
 * the server (its connections, /connz, and whether it takes a password) and
 * in the registry; another approved host keeps working all along (control).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerRekeys, readKey } from "@netfleet/agent";
import { desiredBucket, generateBoxKeys, type AgentCredentials } from "@netfleet/shared";
import { requestAdmin } from "../../packages/controller/src/enrollment/admin.ts";
import { keyFingerprint } from "../../packages/controller/src/store/registry.ts";
import { SITE, TOKEN, assignmentFor, enrollRaw, eventually, inventoryHost, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

const hosts = ["hv1", "hv2", "hv3", "hv4", "hv5", "hv6"].map((h) => inventoryHost(h));
let site: Site | undefined;
const agents: TestAgent[] = [];
const conns: NatsConnection[] = [];

/** The users the server has a client connection for now (its /connz, with auth details). */
async function connectedUsers(s: Site): Promise<string[]> {
  const res = await fetch(`${s.server.nodes[0]!.monitorUrl}/connz?auth=1&limit=1024`);
  const body = (await res.json()) as { connections?: { authorized_user?: string }[] };
  return (body.connections ?? []).map((c) => c.authorized_user ?? "");
}

/** Connecting with these credentials: "ok", or the server's refusal. */
async function tryConnect(s: Site, user: string, pass: string): Promise<string> {
  try {
    const nc = await connect({ servers: s.server.urls, user, pass, reconnect: false, timeout: 3000 });
    await nc.close();
    return "ok";
  } catch (err) {
    return (err as Error).message;
  }
}

beforeAll(async () => {
  site = await startSite({ basePort: 32150, hosts });
  for (const hostname of ["hv1", "hv2"]) agents.push(startAgent(site, { hostname }));
  await Promise.all(agents.map((a) => a.started));
  for (const h of ["hv1", "hv2"]) {
    const p = await site.cp.publish(assignmentFor(h, 1));
    await site.cp.waitForApplied(h, p.revision, 15_000);
  }
}, 60_000);

afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await stopAll(site, agents);
});

describe("hosts revoke and rekey (real nats-server)", () => {
  it("revoke: the agent's connection is closed at once, it cannot connect again, and another host keeps working", async () => {
    const s = site!;
    const old = JSON.parse(await readFile(join(s.credentialsDir, "hv1.json"), "utf8")) as { user: string; password: string };
    expect(await connectedUsers(s)).toContain("agent-lab-hv1");
    const t0 = Date.now();
    const record = await s.cp.admin("revoke", "hv1");
    expect(record).toMatchObject({ state: "rejected", reason: "credentials revoked by operator", approvedKey: null });
    await eventually(async () => !(await connectedUsers(s)).includes("agent-lab-hv1"), "hv1's connection closed by the server", 5000);
    const closedMs = Date.now() - t0;
    expect(await tryConnect(s, old.user, old.password)).toMatch(/Authorization Violation/i);
    // The agent keeps trying with its old password; the server keeps refusing it.
    await new Promise((r) => setTimeout(r, 2000));
    expect(await connectedUsers(s)).not.toContain("agent-lab-hv1");
    expect((await s.cp.users()).map((u) => u.user)).not.toContain("agent-lab-hv1");
    expect((await s.cp.registry.get("hv1"))?.revokedAt).toBeTruthy();
    // A fresh host token does not bring it back: only an operator's approve does.
    expect((await enrollRaw(s, { hostname: "hv1", token: s.hostToken("hv1"), timeoutMs: 1500 })).credentials).toBeUndefined();
    expect(s.events.some((e) => e.event === "enroll-refused" && e.host === "hv1" && String(e.reason).includes("revoked"))).toBe(true);
    // Revoking a host that is not approved says so.
    await expect(s.cp.admin("revoke", "hv4")).rejects.toThrow(/hv4: is not approved/);

    // Control: hv2 stayed connected and still applies.
    expect(await connectedUsers(s)).toContain("agent-lab-hv2");
    const p = await s.cp.publish(assignmentFor("hv2", 2));
    expect((await s.cp.waitForApplied("hv2", p.revision, 15_000)).revision).toBe(p.revision);
    console.log(`revoke: hv1's connection closed ${closedMs} ms after the request`);
  }, 40_000);

  it("rekey: the connected agent takes new credentials sealed to its key, the old password is refused, the new one works", async () => {
    const s = site!;
    const enrolled = await enrollRaw(s, { hostname: "hv3", token: s.hostToken("hv3"), timeoutMs: 10_000 });
    const c1 = enrolled.credentials!;
    expect(c1).toMatchObject({ host: "hv3", user: "agent-lab-hv3" });
    const agentNc = await connect({ servers: s.server.urls, user: c1.user, pass: c1.password, inboxPrefix: c1.inboxPrefix, maxReconnectAttempts: 3, reconnectTimeWait: 200 });
    conns.push(agentNc);
    let kept: AgentCredentials | undefined;
    const log: Record<string, unknown>[] = [];
    answerRekeys(agentNc, SITE, "hv3", enrolled.keys, async (c) => void (kept = c), (e) => log.push(e));
    await agentNc.flush();

    const t0 = Date.now();
    await s.cp.admin("rekey", "hv3");
    expect(kept).toMatchObject({ site: SITE, host: "hv3", user: "agent-lab-hv3" });
    expect(kept!.password).not.toBe(c1.password);
    // The server dropped the connection made with the old password, and refuses it from now on.
    await eventually(async () => !(await connectedUsers(s)).includes("agent-lab-hv3"), "the old connection closed", 5000);
    const closedMs = Date.now() - t0;
    expect(await tryConnect(s, c1.user, c1.password)).toMatch(/Authorization Violation/i);
    // The new credentials work: connect and read its own desired key.
    await s.cp.publish(assignmentFor("hv3", 1));
    const fresh = await connect({ servers: s.server.urls, user: kept!.user, pass: kept!.password, inboxPrefix: kept!.inboxPrefix });
    conns.push(fresh);
    const entry = await readKey(fresh, desiredBucket(SITE), "hv3", 5000);
    expect(entry?.operation).toBe("PUT");
    expect(new TextDecoder().decode(entry!.data)).toContain('"host":"hv3"');
    expect((await s.cp.registry.get("hv3"))?.state).toBe("approved");

    // A rekey nobody answers (hv4 approved, its agent not connected) fails and changes nothing.
    const hv4 = (await enrollRaw(s, { hostname: "hv4", token: s.hostToken("hv4"), timeoutMs: 10_000 })).credentials!;
    await expect(s.cp.admin("rekey", "hv4", 20_000)).rejects.toThrow(/did not take new credentials/);
    expect(await tryConnect(s, hv4.user, hv4.password)).toBe("ok");
    // Rekeying a host that is not approved says so.
    await expect(s.cp.admin("rekey", "hv1")).rejects.toThrow(/hv1: is not approved/);
    // Control: hv2 unaffected.
    expect(await connectedUsers(s)).toContain("agent-lab-hv2");
    console.log(`rekey: old connection closed ${closedMs} ms after the request`);
  }, 60_000);

  it("rekey of a real agent (FleetMember): it takes the new credentials, comes back with them and keeps applying; the old password is refused", async () => {
    const s = site!;
    const hv6 = startAgent(s, { hostname: "hv6" });
    agents.push(hv6);
    await hv6.started;
    const old = JSON.parse(await readFile(join(s.credentialsDir, "hv6.json"), "utf8")) as { user: string; password: string };
    const t0 = Date.now();
    await s.cp.admin("rekey", "hv6");
    expect(hv6.events.some((e) => e.event === "rekeyed")).toBe(true);
    const fresh = JSON.parse(await readFile(join(s.credentialsDir, "hv6.json"), "utf8")) as { password: string };
    expect(fresh.password).not.toBe(old.password);
    expect(await tryConnect(s, old.user, old.password)).toMatch(/Authorization Violation/i);
    const p = await s.cp.publish(assignmentFor("hv6", 3));
    expect((await s.cp.waitForApplied("hv6", p.revision, 20_000)).revision).toBe(p.revision);
    expect(await connectedUsers(s)).toContain("agent-lab-hv6");
    console.log(`rekey of a FleetMember: back and applying ${Date.now() - t0} ms after the request`);
  }, 40_000);

  it("a site-token claim on an approved host: reject drops only the claim, approve needs --replace-key; the real agent keeps its credentials", async () => {
    const s = site!;
    const hv2 = JSON.parse(await readFile(join(s.credentialsDir, "hv2.json"), "utf8")) as { user: string; password: string };
    const approvedKey = (await s.cp.registry.get("hv2"))!.approvedKey;
    const mallory = generateBoxKeys();
    expect((await enrollRaw(s, { hostname: "hv2", token: TOKEN, keys: mallory, timeoutMs: 1500 })).credentials).toBeUndefined();
    await eventually(async () => (await s.cp.registry.claim("hv2"))?.claimKey === mallory.publicKey, "mallory's claim on hv2");
    const fp = keyFingerprint(mallory.publicKey);
    expect((await s.cp.registry.list()).find((r) => r.host === "hv2")?.reason).toContain(`--replace-key ${fp}`);
    // A careless approve does not hand hv2 over.
    await expect(s.cp.admin("approve", "hv2")).rejects.toThrow(new RegExp(`approve --replace-key ${fp}`));
    expect((await s.cp.registry.get("hv2"))?.approvedKey).toBe(approvedKey);
    // Reject drops the claim only: hv2 stays approved, connected, with a working password; mallory's key is refused from now on.
    const rejected = await s.cp.admin("reject", "hv2");
    expect(rejected).toMatchObject({ state: "approved", approvedKey, rejectedKeys: [mallory.publicKey] });
    expect(await s.cp.registry.claim("hv2")).toBeUndefined();
    expect(await tryConnect(s, hv2.user, hv2.password)).toBe("ok");
    expect(await connectedUsers(s)).toContain("agent-lab-hv2");
    const refusedBefore = s.events.filter((e) => e.event === "enroll-refused" && e.reason === "this agent key was rejected by an operator").length;
    await new Promise((r) => setTimeout(r, 2000)); // hv2's per-name bucket refills
    expect((await enrollRaw(s, { hostname: "hv2", token: TOKEN, keys: mallory, timeoutMs: 1500 })).credentials).toBeUndefined();
    await eventually(() => s.events.filter((e) => e.event === "enroll-refused" && e.reason === "this agent key was rejected by an operator").length > refusedBefore, "mallory's next claim refused");
    expect(await s.cp.registry.claim("hv2")).toBeUndefined();
    await expect(s.cp.admin("reject", "hv2")).rejects.toThrow(/no pending claim/);
    // Control: reject of a host that only has a claim rejects it.
    await enrollRaw(s, { hostname: "hv5", token: TOKEN, timeoutMs: 1000 });
    await eventually(async () => (await s.cp.registry.claim("hv5")) !== undefined, "hv5 claim");
    expect(await s.cp.admin("reject", "hv5")).toMatchObject({ state: "rejected" });
    // Control: the explicit hand-over works, and takes hv2's credentials from the old agent.
    const trent = generateBoxKeys();
    await new Promise((r) => setTimeout(r, 2000));
    await enrollRaw(s, { hostname: "hv2", token: TOKEN, keys: trent, timeoutMs: 1000 });
    await eventually(async () => (await s.cp.registry.claim("hv2"))?.claimKey === trent.publicKey, "trent's claim on hv2");
    const handed = await requestAdmin(s.cp.nc, SITE, "approve", "hv2", 15_000, { replaceKey: keyFingerprint(trent.publicKey) });
    expect(handed).toMatchObject({ state: "approved", approvedKey: trent.publicKey });
    expect(await tryConnect(s, hv2.user, hv2.password)).toMatch(/Authorization Violation/i);
  }, 60_000);
});
