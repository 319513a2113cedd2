import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  STORED_DIGEST_HEADER,
  STORED_REVISION_HEADER,
  STORED_SEQUENCE_HEADER,
  appliedBucket,
  desiredBucket,
  desiredStoredSubject,
  directGetSubject,
  kvStream,
  kvSubject,
  reportSubject,
  heartbeatSubject,
  enrollSubject,
  storedDigest,
} from "@netfleet/shared";
import { SITE, agentFileConnection, assignmentFor, eventually, inventoryHost, recordingConnection, startAgent, startSite, type Site, type TestAgent } from "./harness.ts";

const DESIRED = desiredBucket(SITE);
const APPLIED = appliedBucket(SITE);

async function expectPublishDenied(c: { nc: NatsConnection; errors: string[] }, subject: string, data = "x"): Promise<void> {
  c.nc.publish(subject, data);
  await c.nc.flush();
  const deadline = Date.now() + 2000;
  while (!c.errors.some((e) => e.includes(`Permissions Violation for Publish to "${subject}"`))) {
    if (Date.now() > deadline) throw new Error(`publish to ${subject} was not refused`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function expectRequestDenied(nc: NatsConnection, subject: string, data = ""): Promise<void> {
  await expect(nc.request(subject, data, { timeout: 2000 })).rejects.toThrow(/Permissions Violation for Publish/);
}

async function expectSubscribeDenied(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject);
  const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("still open"), 2000))]);
  expect(String((closed as Error | undefined)?.message ?? closed)).toMatch(new RegExp(`Permissions Violation for Subscription to "${subject.replace(/[.$*>]/g, "\\$&")}"`));
}

describe("least privilege (nats-server 2.9 static users)", () => {
  let site: Site;
  const agents: TestAgent[] = [];
  let a: { nc: NatsConnection; errors: string[] };
  let spy: NatsConnection;
  const spied: string[] = [];

  beforeAll(async () => {
    site = await startSite({ basePort: 31200, hosts: [inventoryHost("hv1"), inventoryHost("hv2")] });
    for (const hostname of ["hv1", "hv2"]) agents.push(startAgent(site, { hostname }));
    await Promise.all(agents.map((x) => x.started));
    await site.cp.publish(assignmentFor("hv1", 1));
    await site.cp.publish(assignmentFor("hv2", 2));
    a = await agentFileConnection(site, "hv1");
    spy = site.cp.nc;
    const sub = spy.subscribe(reportSubject(SITE, "hv2"));
    void (async () => {
      for await (const m of sub) spied.push(m.string());
    })();
    await spy.flush();
  });

  afterAll(async () => {
    await a?.nc.close();
    for (const x of agents) await x.client.stop();
    await site?.close();
  });

  it("agent A reads and writes what is its own", async () => {
    const own = await a.nc.request(directGetSubject(DESIRED, "hv1"), "", { timeout: 2000 });
    expect(JSON.parse(own.string())).toMatchObject({ revision: 1, assignment: { host: "hv1" } });

    const watch = a.nc.subscribe(kvSubject(DESIRED, "hv1"), { max: 1 });
    // ... and the controller's word that the bucket stored it: those very bytes, and their sequence, revision and digest.
    const word = a.nc.subscribe(desiredStoredSubject(SITE, "hv1"), { max: 1 });
    await a.nc.flush();
    const published = await site.cp.publish(assignmentFor("hv1", 3));
    let written: Uint8Array | undefined;
    for await (const m of watch) {
      expect(JSON.parse(m.string())).toMatchObject({ revision: 2 });
      written = m.data;
    }
    for await (const m of word) {
      expect(Buffer.from(m.data).equals(Buffer.from(written!))).toBe(true);
      expect([m.headers?.get(STORED_SEQUENCE_HEADER), m.headers?.get(STORED_REVISION_HEADER), m.headers?.get(STORED_DIGEST_HEADER)]).toEqual([String(published.kvRevision), "2", storedDigest(written!)]);
    }
    // hv1's own agent applies revision 2 and stores its report in the same key: waited for (bounded), so that it
    // cannot land between the write below and its read-back.
    await eventually(async () => {
      const stored = await a.nc.request(directGetSubject(APPLIED, "hv1"), "", { timeout: 2000 });
      return stored.data.length > 0 && (JSON.parse(stored.string()) as { revision?: number }).revision === 2;
    }, "hv1's agent stores its report of revision 2");

    const ack = await a.nc.request(kvSubject(APPLIED, "hv1"), JSON.stringify({ probe: true }), { timeout: 2000 });
    expect(JSON.parse(ack.string())).toMatchObject({ stream: kvStream(APPLIED) });
    const back = await a.nc.request(directGetSubject(APPLIED, "hv1"), "", { timeout: 2000 });
    expect(JSON.parse(back.string())).toEqual({ probe: true });
    for (const subject of [reportSubject(SITE, "hv1"), heartbeatSubject(SITE, "hv1"), enrollSubject(SITE, "hv1")]) a.nc.publish(subject, "{}");
    await a.nc.flush();
    expect(a.errors).toEqual([]);
  });

  it("agent A cannot read host B's assignment: not by direct get, stream get, subscription or a consumer", async () => {
    await expectRequestDenied(a.nc, directGetSubject(DESIRED, "hv2"));
    await expectRequestDenied(a.nc, `$JS.API.DIRECT.GET.${kvStream(DESIRED)}`, JSON.stringify({ last_by_subj: kvSubject(DESIRED, "hv2") }));
    await expectRequestDenied(a.nc, `$JS.API.STREAM.MSG.GET.${kvStream(DESIRED)}`, JSON.stringify({ last_by_subj: kvSubject(DESIRED, "hv2") }));
    await expectRequestDenied(a.nc, `$JS.API.CONSUMER.CREATE.${kvStream(DESIRED)}`, JSON.stringify({ stream_name: kvStream(DESIRED), config: { filter_subject: kvSubject(DESIRED, "hv2"), deliver_subject: "_nf_inbox.lab.hv1.steal", ack_policy: "none" } }));
    await expectRequestDenied(a.nc, `$JS.API.CONSUMER.CREATE.${kvStream(DESIRED)}.steal.${kvSubject(DESIRED, "hv2")}`, "{}");
    await expectRequestDenied(a.nc, `$JS.API.CONSUMER.DURABLE.CREATE.${kvStream(DESIRED)}.steal`, "{}");
    await expectRequestDenied(a.nc, `$JS.API.STREAM.INFO.${kvStream(DESIRED)}`);
    // The client libraries take the same paths: both fail before reading anything.
    await expect(jetstreamManager(a.nc, { timeout: 2000 })).rejects.toThrow(/Permissions Violation/);
    await expect(new Kvm(a.nc).open(DESIRED).then((kv) => kv.get("hv2"))).rejects.toThrow(/Permissions Violation/);
    for (const subject of [kvSubject(DESIRED, "hv2"), `$KV.${DESIRED}.>`, `$KV.${DESIRED}.*`, desiredStoredSubject(SITE, "hv2"), desiredStoredSubject(SITE, "*"), "nf.lab.stored.>", "_INBOX.>", "_nf_inbox.lab.hv2.>", ">"])
      await expectSubscribeDenied(a.nc, subject);
  });

  it("agent A cannot write host B's keys or B's report subject, nor any desired key", async () => {
    const before = await site.cp.desired.read("hv2");
    await expectPublishDenied(a, kvSubject(DESIRED, "hv2"));
    await expectPublishDenied(a, kvSubject(DESIRED, "hv1"));
    await expectPublishDenied(a, kvSubject(APPLIED, "hv2"));
    await expectPublishDenied(a, reportSubject(SITE, "hv2"), JSON.stringify({ forged: true }));
    await expectPublishDenied(a, heartbeatSubject(SITE, "hv2"));
    await expectPublishDenied(a, enrollSubject(SITE, "hv2"));
    // The controller's word that a write was stored: no agent may give it, for another host or for itself.
    await expectPublishDenied(a, desiredStoredSubject(SITE, "hv2"));
    await expectPublishDenied(a, desiredStoredSubject(SITE, "hv1"));
    expect((await site.cp.desired.read("hv2"))?.kvRevision).toBe(before?.kvRevision);
    await spy.flush();
    expect(spied.filter((m) => m.includes("forged"))).toEqual([]);
  });

  it("the shared enrollment user may only publish enrollments (and hear sealed welcomes)", async () => {
    const e = await recordingConnection(site, `enroll-${SITE}`, site.enrollPassword);
    try {
      e.nc.publish(enrollSubject(SITE, "newhost"), "{}");
      await e.nc.flush();
      expect(e.errors).toEqual([]);
      await expectPublishDenied(e, reportSubject(SITE, "hv1"));
      await expectPublishDenied(e, kvSubject(APPLIED, "hv1"));
      await expectPublishDenied(e, directGetSubject(DESIRED, "hv1"));
      await expectSubscribeDenied(e.nc, kvSubject(DESIRED, "hv1"));
      await expectSubscribeDenied(e.nc, "_INBOX.>");
    } finally {
      await e.nc.close();
    }
  });
});
