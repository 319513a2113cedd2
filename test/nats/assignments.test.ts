import { Kvm } from "@nats-io/kv";
import { afterEach, describe, expect, it } from "vitest";
import { StaleRevisionError } from "@netfleet/controller";
import { desiredBucket, encodeMessage, generateSigningKeys, signAssignment } from "@netfleet/shared";
import { SITE, assignmentFor, eventually, inventoryHost, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

let site: Site | undefined;
const agents: TestAgent[] = [];

afterEach(async () => {
  await stopAll(site, agents);
  site = undefined;
});

describe("desired state", () => {
  it("publishes with compare-and-set: a publish based on a stale revision is refused and changes nothing", async () => {
    site = await startSite({ basePort: 31100, hosts: [inventoryHost("hv1")] });
    const first = await site.cp.publish(assignmentFor("hv1", 1));
    expect(first).toMatchObject({ revision: 1, changed: true });
    expect(await site.cp.publish(assignmentFor("hv1", 1))).toMatchObject({ revision: 1, changed: false });

    const second = await site.cp.publish(assignmentFor("hv1", 2), { basedOn: first.kvRevision });
    expect(second).toMatchObject({ revision: 2, changed: true });
    // A second operator still holding the first read:
    const stale = site.cp.publish(assignmentFor("hv1", 3), { basedOn: first.kvRevision });
    await expect(stale).rejects.toBeInstanceOf(StaleRevisionError);
    await expect(stale).rejects.toThrow(/someone published meanwhile/);
    const stored = await site.cp.desired.read("hv1");
    expect(stored?.envelope).toMatchObject({ revision: 2, assignment: { hash: second.hash } });
    expect(stored?.kvRevision).toBe(second.kvRevision);

    // Two publishers racing on one key: exactly one wins.
    const results = await Promise.allSettled([site.cp.publish(assignmentFor("hv1", 4), { basedOn: second.kvRevision }), site.cp.publish(assignmentFor("hv1", 5), { basedOn: second.kvRevision })]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(results.filter((r) => r.status === "rejected")).toHaveLength(1);
  });

  it("publishes on the caller's read (known) without reading first: a key that moved since is refused; a deleted key's revisions go on above its history", async () => {
    site = await startSite({ basePort: 31130, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    const cp = site.cp;
    // No value read (a fresh key): a strict create.
    const first = await cp.publish(assignmentFor("hv1", 1), { basedOn: 0, known: null });
    expect(first).toMatchObject({ revision: 1, changed: true });
    const second = await cp.publish(assignmentFor("hv1", 2), { basedOn: first.kvRevision, known: { revision: 1, hash: first.hash } });
    expect(second).toMatchObject({ revision: 2, changed: true });
    // The same document on its own read: nothing written.
    expect(await cp.publish(assignmentFor("hv1", 2), { basedOn: second.kvRevision, known: { revision: 2, hash: second.hash } })).toMatchObject({ revision: 2, kvRevision: second.kvRevision, changed: false });
    // A read older than the key: refused, nothing written.
    await expect(cp.publish(assignmentFor("hv1", 3), { basedOn: first.kvRevision, known: { revision: 1, hash: first.hash } })).rejects.toBeInstanceOf(StaleRevisionError);
    // A read that saw no value where someone has published since: refused.
    const other = await cp.publish(assignmentFor("hv2", 1));
    await expect(cp.publish(assignmentFor("hv2", 2), { basedOn: 0, known: null })).rejects.toBeInstanceOf(StaleRevisionError);
    expect((await cp.desired.read("hv2"))?.kvRevision).toBe(other.kvRevision);
    // A deleted key read as "no value": the strict create is refused and the key read, so the revision goes on above
    // its history (3), never back to 1, which an older envelope of the key would outrank.
    const kv = await new Kvm(cp.nc).open(desiredBucket(SITE));
    await kv.delete("hv1");
    const again = await cp.publish(assignmentFor("hv1", 4), { basedOn: 0, known: null });
    expect(again).toMatchObject({ revision: 3, changed: true });
    expect((await cp.desired.read("hv1"))?.envelope).toMatchObject({ revision: 3, assignment: { hash: again.hash } });
  });

  it("the agent applies a signed newer revision and rejects unsigned, forged, wrong-key, other-host and older envelopes, keeping the current one", async () => {
    site = await startSite({ basePort: 31110, hosts: [inventoryHost("hv1")] });
    const agent = startAgent(site, { hostname: "hv1", resyncMs: 500 });
    agents.push(agent);
    await agent.started;
    await site.cp.publish(assignmentFor("hv1", 1));
    await site.cp.publish(assignmentFor("hv1", 2));
    await eventually(() => agent.applied.at(-1)?.revision === 2, "revision 2 applied");
    const current = agent.applied.at(-1)!;

    const kv = await new Kvm(site.cp.nc).open(desiredBucket(SITE));
    const rejectedCount = () => agent.events.filter((e) => e.event === "assignment-rejected").length;
    const expectRejected = async (value: unknown, reason: string, message: RegExp) => {
      const before = rejectedCount();
      await kv.put("hv1", encodeMessage(value));
      await eventually(() => rejectedCount() > before, `rejection (${reason})`);
      const event = agent.events.filter((e) => e.event === "assignment-rejected").at(-1)!;
      expect(event).toMatchObject({ reason, keeping: 2 });
      expect(String(event.error)).toMatch(message);
      expect(agent.applied.at(-1)).toEqual(current);
      expect(agent.client.current?.revision).toBe(2);
    };

    const signed = signAssignment(assignmentFor("hv1", 3), 3, site.signing.privateKeyPem);
    const { signature: _s, keyId: _k, ...unsigned } = signed;
    await expectRejected(unsigned, "unsigned", /is not signed/);
    await expectRejected({ ...signed, assignment: assignmentFor("hv1", 99) }, "bad-signature", /does not verify/);
    await expectRejected({ ...signed, revision: 4 }, "bad-signature", /does not verify/);
    const mallory = generateSigningKeys();
    await expectRejected(signAssignment(assignmentFor("hv1", 3), 3, mallory.privateKeyPem), "unknown-key", /unknown key/);
    await expectRejected(signAssignment(assignmentFor("hv2", 3), 3, site.signing.privateKeyPem), "wrong-host", /not lab\/hv1/);
    await expectRejected(signAssignment(assignmentFor("hv1", 1), 1, site.signing.privateKeyPem), "stale-revision", /revision 1 is not newer than the current revision 2/);
    await expectRejected(assignmentFor("hv1", 3), "decode", /not a signed assignment envelope/);
    await expectRejected({ ...signed, assignment: { ...signed.assignment, role: "backend" } }, "decode", /content hash does not match/);

    // The next genuine revision is still accepted: the controller continues above every revision in the key's history.
    const next = await site.cp.publish(assignmentFor("hv1", 5));
    expect(next.revision).toBeGreaterThan(2);
    await eventually(() => agent.applied.at(-1)?.revision === next.revision, "next revision applied");
    const revisions = agent.applied.map((a) => a.revision);
    expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
    expect(new Set(revisions).size).toBe(revisions.length);
  });

  it("an agent whose connection closes under it (not a disconnect: closed for good) connects again and keeps applying", async () => {
    site = await startSite({ basePort: 31120, hosts: [inventoryHost("hv1")] });
    const agent = startAgent(site, { hostname: "hv1" });
    agents.push(agent);
    await agent.started;
    await site.cp.publish(assignmentFor("hv1", 1));
    await eventually(() => agent.applied.length === 1, "first apply");
    // What nats.js does after repeated authorization errors (e.g. a server reload catching the client mid-handshake).
    await (agent.client as unknown as { nc: { close(): Promise<void> } }).nc.close();
    await eventually(() => agent.events.some((e) => e.event === "connection-lost"), "the agent notices");
    await site.cp.publish(assignmentFor("hv1", 2));
    await eventually(() => agent.applied.length === 2, "applies after connecting again", 15_000);
    const report = await site.cp.waitForApplied("hv1", 2, 10_000);
    expect(report.revision).toBe(2);
  });
});
