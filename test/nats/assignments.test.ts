import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterEach, describe, expect, it } from "vitest";
import { StaleRevisionError } from "@netfleet/controller";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  STORED_REVISION_HEADER,
  STORED_SEQUENCE_HEADER,
  agentInboxPrefix,
  desiredBucket,
  desiredStoredSubject,
  encodeMessage,
  generateSigningKeys,
  kvSubject,
  signAssignment,
} from "@netfleet/shared";
import { SITE, assignmentFor, eventually, inventoryHost, sendStoredWord, startAgent, startSite, stopAll, type Site, type TestAgent } from "./harness.ts";

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
    // The refusal of this very write, told by its stream sequence: a resync (every 500 ms) may refuse the one before again meanwhile.
    const expectRejected = async (value: unknown, reason: string, message: RegExp) => {
      const seq = await kv.put("hv1", encodeMessage(value));
      const refusal = () => agent.events.find((e) => e.event === "assignment-rejected" && e.seq === seq);
      await eventually(() => refusal() !== undefined, `rejection (${reason})`);
      const event = refusal()!;
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

  it("a write the controller says the bucket stored is applied from its word, without reading it back; a write the stream refused is not heard; a word without the bytes, or with bytes refused, is read and the stored value decides", async () => {
    site = await startSite({ basePort: 31140, hosts: [inventoryHost("hv1")] });
    const s = site;
    // No resync during the test: what the agent does comes from what it hears on its subjects.
    const agent = startAgent(s, { hostname: "hv1", resyncMs: 600_000 });
    agents.push(agent);
    await agent.started;
    // Every direct get of the desired bucket hv1's agent makes (its replies go to its own inbox), as the server sees
    // it: the controller may subscribe to any subject. The controller's own reads (publish reads first) are not counted.
    const gets: string[] = [];
    const spy = s.cp.nc.subscribe(`$JS.API.DIRECT.GET.KV_${desiredBucket(SITE)}.>`, {
      callback: (_e, m) => {
        if (m.reply?.startsWith(agentInboxPrefix(SITE, "hv1") + ".")) gets.push(m.subject);
      },
    });
    await s.cp.nc.flush();
    // The agent's own read at connect (its first sync) is not what this test counts: waited for, then forgotten.
    await eventually(() => agent.events.some((e) => e.event === "connected"), "the agent connected");
    await agent.client.idle();
    gets.length = 0;
    const rejected = () => agent.events.filter((e) => e.event === "assignment-rejected");

    // Positive control: two revisions published by the controller are applied, and the key is never read for them.
    for (const n of [1, 2]) {
      const published = await s.cp.publish(assignmentFor("hv1", n));
      await eventually(() => agent.applied.at(-1)?.revision === published.revision, `revision ${published.revision} applied`);
    }
    expect(gets, "direct gets of the desired key").toEqual([]);
    const kept = agent.applied.at(-1)!;

    const word = (bytes: Uint8Array, seq: number, revision: number) => sendStoredWord(s.cp.nc, "hv1", bytes, seq, revision);
    // Attack 1: a genuinely signed revision 7 published on hv1's key but refused by the stream (a lost compare-and-set).
    // The agent does not follow the key's own subject: no word follows the refusal, so nothing is heard, read or applied.
    const js = jetstream(s.cp.nc);
    const refusedBytes = encodeMessage(signAssignment(assignmentFor("hv1", 7), 7, s.signing.privateKeyPem));
    await expect(js.publish(kvSubject(desiredBucket(SITE), "hv1"), refusedBytes, { expect: { lastSubjectSequence: 1 } })).rejects.toThrow(/wrong last sequence/);
    // (a word that followed it would have been on the same connection, before this round trip: none came)
    await s.cp.nc.flush();
    await agent.client.idle();
    expect(gets, "no read after the refused write").toEqual([]);
    expect(agent.client.current?.revision).toBe(2);
    // Attack 2: a word without the bytes (what a controller before them sent) for a revision 8 never stored: only a
    // hint, so the key is read (again, 100 ms apart, up to 10 times, while it holds less than revision 8: readDesired)
    // and still holds revision 2. Its read is the first one since attack 1: that refused write caused none.
    const bare = natsHeaders();
    bare.set(STORED_SEQUENCE_HEADER, "999");
    bare.set(STORED_REVISION_HEADER, "8");
    s.cp.nc.publish(desiredStoredSubject(SITE, "hv1"), undefined, { headers: bare });
    await eventually(() => gets.length > 0, "the agent reads the key after a word without the bytes", 8_000);
    await agent.client.idle();
    expect(agent.applied.at(-1)).toEqual(kept);
    expect(agent.client.current?.revision).toBe(2);

    // Attack 3: bytes stored in the key by someone else than the controller's store (mallory's key), and a word that
    // carries them (the controller's connection misused): judged as heard and refused, so the key is read, judged as
    // stored, and refused with the stored value's stream sequence.
    const afterWord = gets.length;
    const mallory = generateSigningKeys();
    const kv = await new Kvm(s.cp.nc).open(desiredBucket(SITE));
    const malloryBytes = encodeMessage(signAssignment(assignmentFor("hv1", 9), 9, mallory.privateKeyPem));
    const seq = await kv.put("hv1", malloryBytes);
    word(malloryBytes, seq, 9);
    await eventually(() => rejected().some((e) => e.seq === seq), "mallory's stored revision refused", 8_000);
    expect(rejected().find((e) => e.seq === seq)).toMatchObject({ reason: "unknown-key", keeping: 2 });
    expect(gets.length).toBeGreaterThan(afterWord);
    expect(agent.applied.at(-1)).toEqual(kept);
    const reads = gets.length;

    // And the controller's next revision is applied from what the agent heard, with no read.
    const next = await s.cp.publish(assignmentFor("hv1", 10));
    await eventually(() => agent.applied.at(-1)?.revision === next.revision, "the next revision applied");
    expect(gets).toHaveLength(reads);
    spy.unsubscribe();
  });

  it("a write heard while an earlier apply runs is not applied once a later write was heard: the key is read, and the later one applied", async () => {
    site = await startSite({ basePort: 31150, hosts: [inventoryHost("hv1")] });
    const s = site;
    const applied: number[] = [];
    let slow = true;
    // Revision 1's apply takes 1.5 s: revisions 2 and 3 are heard (and their words come) while it runs.
    const agent = startAgent(s, {
      hostname: "hv1",
      resyncMs: 600_000,
      onAssignment: async (_a, revision) => {
        applied.push(revision);
        if (slow) await new Promise((r) => setTimeout(r, 1500));
        slow = false;
        return { summary: { ok: 1, changed: 1, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true, comment: "changed" }] };
      },
    });
    agents.push(agent);
    await agent.started;
    const first = await s.cp.publish(assignmentFor("hv1", 1));
    await eventually(() => applied.length === 1, "revision 1 applying");
    await s.cp.publish(assignmentFor("hv1", 2));
    const third = await s.cp.publish(assignmentFor("hv1", 3));
    await eventually(() => agent.client.current?.revision === third.revision, "revision 3 in force");
    await agent.client.idle();
    // Revision 2 was withdrawn (written over) before its turn came: it is never applied.
    expect(applied).toEqual([first.revision, third.revision]);
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
