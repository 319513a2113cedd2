import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TOKEN, assignmentFor, eventually, inventoryHost, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

const hosts = [inventoryHost("hv1", "52:54:00:00:01:01"), inventoryHost("hv2", "52:54:00:00:02:02")];
let site: Site | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
});

describe("enrollment", () => {
  it("approves an agent with a host token minted for its inventory name; it then receives its assignment", async () => {
    site = await startSite({ basePort: 31000, hosts });
    const token = site.hostToken("hv1");
    const agent = startAgent(site, { hostname: "hv1", token });
    agents.push(agent);
    await agent.started;
    expect(agent.client.host).toBe("hv1");
    const record = await site.cp.registry.get("hv1");
    expect(record).toMatchObject({ state: "approved", matchedBy: "token", inventory: true, reason: null });
    expect(record?.facts).toMatchObject({ hostname: "hv1", ovsVersion: "3.1.0", kernel: { "8021q": { loaded: true } } });
    expect(JSON.stringify(record)).not.toContain(token.split(".").at(-1));

    const published = await site.cp.publish(assignmentFor("hv1", 1));
    await eventually(() => agent.applied.length === 1, "agent applies revision 1");
    expect(agent.applied[0]).toEqual({ revision: published.revision, hash: published.hash });
    const report = await site.cp.waitForApplied("hv1", published.revision, 10_000);
    expect(report).toMatchObject({ revision: 1, hash: published.hash, rolledBack: false });

    const status = await site.cp.status();
    expect(status.find((s) => s.host === "hv1")).toMatchObject({ enrolled: true, state: "approved", drift: false, desired: { revision: 1 }, applied: { revision: 1 } });
    expect(status.find((s) => s.host === "hv2")).toMatchObject({ enrolled: false, state: "unenrolled", drift: false, desired: null });
  });

  it("refuses an agent with a wrong token (nothing recorded), and keeps one with the site token a pending claim until an operator approves it", async () => {
    site = await startSite({ basePort: 31010, hosts });
    const wrong = startAgent(site, { hostname: "hv1", token: "wrong-token" });
    agents.push(wrong);
    await eventually(() => site!.events.some((e) => e.event === "enroll-refused" && e.reason === "wrong enrollment token"), "wrong token refused");
    expect(await site.cp.registry.claim("hv1")).toBeUndefined();
    expect(await site.cp.registry.get("hv1")).toBeUndefined();

    const agent = startAgent(site, { hostname: "hv2", token: TOKEN });
    agents.push(agent);
    await eventually(async () => (await site!.cp.registry.claim("hv2"))?.state === "quarantined", "hv2 a pending claim");
    expect(await site.cp.registry.get("hv2")).toBeUndefined();
    expect((await site.cp.registry.claim("hv2"))?.reason).toMatch(/site token: waiting for an operator/);
    await site.cp.publish(assignmentFor("hv2", 1));
    await new Promise((r) => setTimeout(r, 1500));
    expect(agent.client.host).toBeUndefined();
    expect(agent.applied).toEqual([]);
    // Nothing issued before the approval: hv2's NATS user is a spare (CredentialStore.provision), made with hv1's
    // enrollment, whose password only the controller holds; approving hands it out without a reload.
    expect(existsSync(join(site.credentialsDir, "hv2.json"))).toBe(false);
    expect(site.events.filter((e) => e.event === "spare-users")).toEqual([{ event: "spare-users", hosts: 2 }]);
    const spare = (await site.cp.users()).find((u) => u.user === "agent-lab-hv2");
    expect(spare?.password).toMatch(/^[\w-]{32}$/);

    await site.cp.approve("hv2");
    await agent.started;
    expect(agent.client.host).toBe("hv2");
    // The approval handed out the spare (the server had it already: no reload), now hv2's stored credential.
    const issued = JSON.parse(readFileSync(join(site.credentialsDir, "hv2.json"), "utf8")) as { user: string; password: string; agentKey: string };
    expect(issued).toMatchObject({ user: "agent-lab-hv2", password: spare!.password });
    expect(issued.agentKey).toBe((await site.cp.registry.get("hv2"))?.approvedKey);
    await eventually(() => agent.applied.length === 1, "hv2 applies after approval");
  });

  it("matches an agent by management MAC to a pending claim only (never an approval); an operator approves it", async () => {
    site = await startSite({ basePort: 31020, hosts });
    const agent = startAgent(site, { hostname: "localhost", macs: ["02:00:00:00:00:09", "52:54:00:00:02:02"], token: TOKEN });
    agents.push(agent);
    await eventually(async () => (await site!.cp.registry.claim("hv2"))?.matchedBy === "mac", "claim of hv2 by MAC");
    expect(await site.cp.registry.get("hv2")).toBeUndefined();
    await new Promise((r) => setTimeout(r, 500));
    expect(agent.client.host).toBeUndefined();
    await site.cp.approve("hv2");
    await agent.started;
    expect(agent.client.host).toBe("hv2");
    expect(await site.cp.registry.get("hv2")).toMatchObject({ state: "approved", matchedBy: "mac", facts: { hostname: "localhost" } });
    await site.cp.publish(assignmentFor("hv2", 7));
    await eventually(() => agent.applied.length === 1, "hv2 (by MAC) applies");
  });

  it("quarantines a host no inventory entry matches, and refuses to approve it", async () => {
    site = await startSite({ basePort: 31030, hosts });
    const agent = startAgent(site, { hostname: "stranger", macs: ["02:00:00:00:00:77"], token: TOKEN });
    agents.push(agent);
    await eventually(async () => (await site!.cp.registry.claim("stranger"))?.state === "quarantined", "stranger quarantined");
    await expect(site.cp.approve("stranger")).rejects.toThrow(/matches no inventory host/);
    const row = (await site.cp.status()).find((s) => s.host === "stranger");
    expect(row).toMatchObject({ inventory: false, enrolled: true, state: "quarantined" });
  });
});
