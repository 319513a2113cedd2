import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { NatsServer, controllerUser } from "@netfleet/controller";
import { agentUser } from "../../packages/controller/src/nats/permissions.ts";
import { STORED_REVISION_HEADER, STORED_SEQUENCE_HEADER, agentInboxPrefix, desiredBucket, desiredStoredSubject, kvSubject } from "@netfleet/shared";
import { readDesired, watchDesired, type DesiredWrite } from "../../packages/agent/src/fleet/desired.ts";
import { SITE, assignmentFor, inventoryHost, sendStoredWord, startSite, stopAll, type Site } from "./harness.ts";

let site: Site | undefined;
afterEach(async () => {
  await stopAll(site, []);
  site = undefined;
});

/**
 * readDesired with a hint (the revision a core message on the host's KV
 * subject carried) reads again while the store is behind that hint. Found
 * on a 3-node cluster (bench rollout --nodes 3): a direct get answered by a
 * replica that had not yet applied a host's FIRST write said "no such
 * key", readDesired returned nothing, and the agent never applied its first
 * revision. Here the write behind the hint lands 400 ms after the read
 * starts, on a real nats-server: the read must wait for it, not return
 * "no value".
 */
describe("readDesired: a hinted value that is not there yet", () => {
  it("a key with no value yet, behind a hint, is read again until the value is there", async () => {
    site = await startSite({ basePort: 26340, hosts: [inventoryHost("hv1")] });
    const started = Date.now();
    const reading = readDesired(site.cp.nc, SITE, "hv1", 1, new AbortController().signal);
    await new Promise((r) => setTimeout(r, 400));
    const published = await site.cp.publish(assignmentFor("hv1", 1));
    const stored = await reading;
    expect(stored?.seq, "the read returned the value written after it started").toBe(published.kvRevision);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
  }, 60_000);

  it("without a hint, or when the hinted value never comes, it answers: at once, or after its bounded retries (10 x 100 ms)", async () => {
    site = await startSite({ basePort: 26340, hosts: [inventoryHost("hv1")] });
    let t = Date.now();
    expect(await readDesired(site.cp.nc, SITE, "nobody", 0, new AbortController().signal)).toBeUndefined();
    expect(Date.now() - t).toBeLessThan(900);
    t = Date.now();
    expect(await readDesired(site.cp.nc, SITE, "nobody", 3, new AbortController().signal)).toBeUndefined();
    expect(Date.now() - t).toBeGreaterThanOrEqual(1000);
    // An abort ends the waiting at once.
    const stop = new AbortController();
    t = Date.now();
    const reading = readDesired(site.cp.nc, SITE, "nobody", 3, stop.signal);
    setTimeout(() => stop.abort(), 150);
    expect(await reading).toBeUndefined();
    expect(Date.now() - t).toBeLessThan(900);
  }, 60_000);
});

/**
 * watchDesired on a real nats-server: the controller's word with the stored
 * bytes is a stored write; a word without them, or without a sequence, is
 * a hint to read; the key's own subject is not followed. The controller's
 * connection plays the controller: it may publish on both subjects.
 */
describe("watchDesired: the controller's word", () => {
  it("a word with the bytes is a stored write at its sequence; one without bytes or a sequence names a revision to read; a write on the key's own subject is not heard", async () => {
    site = await startSite({ basePort: 26350, hosts: [inventoryHost("hv1")] });
    const nc = site.cp.nc;
    const writes: DesiredWrite[] = [];
    const words: number[] = [];
    const refusals: string[] = [];
    watchDesired(nc, SITE, "hv1", { written: (w) => void writes.push(w), word: (r) => void words.push(r), refused: (e) => void refusals.push(e) });
    await nc.flush();
    const bytes = (n: number) => new TextEncoder().encode(JSON.stringify({ revision: n, pad: "x".repeat(n) }));
    const bare = (headers: Record<string, string>, body?: Uint8Array) => {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(headers)) h.set(k, v);
      nc.publish(desiredStoredSubject(SITE, "hv1"), body, { headers: h });
    };

    // Positive control: the controller's own word (publishStoredWord) for revision 2 stored at sequence 42.
    sendStoredWord(nc, "hv1", bytes(2), 42, 2);
    await eventuallyTrue(() => writes.length === 1);
    expect(writes[0]).toMatchObject({ revision: 2, stored: 42, json: { value: { revision: 2 } } });
    expect(Buffer.from(writes[0]!.data).equals(Buffer.from(bytes(2)))).toBe(true);

    // A write on the key's own subject (what a stream may still refuse) is not heard; the word after it is.
    nc.publish(kvSubject(desiredBucket(SITE), "hv1"), bytes(3));
    sendStoredWord(nc, "hv1", bytes(4), 44, 4);
    await eventuallyTrue(() => writes.length === 2);
    expect(writes.map((w) => w.revision)).toEqual([2, 4]);

    // A word without the bytes (a controller before them) names the revision to read; without a sequence, too.
    bare({ [STORED_SEQUENCE_HEADER]: "45", [STORED_REVISION_HEADER]: "5" });
    bare({ [STORED_SEQUENCE_HEADER]: "0x2e", [STORED_REVISION_HEADER]: "6" }, bytes(6));
    bare({}, bytes(7));
    await eventuallyTrue(() => words.length === 3);
    expect(words).toEqual([5, 6, 0]);
    expect(writes).toHaveLength(2);

    // An envelope too big to go again beside the headers within max_payload (the put fitted it): the controller's word
    // goes without it, and names the revision to read.
    const big = new TextEncoder().encode(JSON.stringify({ revision: 7, pad: "x".repeat(nc.info!.max_payload - 200) }));
    sendStoredWord(nc, "hv1", big, 47, 7);
    await eventuallyTrue(() => words.length === 4);
    expect(words.at(-1)).toBe(7);
    expect(writes).toHaveLength(2);
    expect(refusals).toEqual([]);
  }, 60_000);

  it("refused the word's subject (the permissions of a controller before it), it follows the key's own subject, each write a revision to read", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nf-watch-"));
    // The agent's permissions as a controller before the word gave them: its key's subject, not the word's.
    const agent = agentUser(SITE, "hv1", "agent-pw");
    const allow = (agent.permissions!.subscribe as { allow: string[] }).allow.filter((s) => s !== desiredStoredSubject(SITE, "hv1"));
    const old = { ...agent, permissions: { ...agent.permissions, subscribe: { allow } } };
    const server = await NatsServer.start({ dir: join(dir, "nats"), nodes: 1, basePort: 26360, users: [controllerUser("controller", "controller-pw"), old] });
    const connections: NatsConnection[] = [];
    // Stopped in this order, whatever failed: connections, the server, then its directory.
    onTestFinished(async () => {
      await Promise.allSettled(connections.map((c) => c.close()));
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const controller = await connect({ servers: server.urls, user: "controller", pass: "controller-pw" });
    connections.push(controller);
    const nc = await connect({ servers: server.urls, user: old.user, pass: "agent-pw", inboxPrefix: agentInboxPrefix(SITE, "hv1") });
    connections.push(nc);
    const writes: DesiredWrite[] = [];
    const words: number[] = [];
    const refusals: string[] = [];
    watchDesired(nc, SITE, "hv1", { written: (w) => void writes.push(w), word: (r) => void words.push(r), refused: (e) => void refusals.push(e) });
    await eventuallyTrue(() => refusals.length === 1);
    expect(refusals[0]).toMatch(/permissions violation/i);
    await nc.flush();
    const bytes = (n: number) => new TextEncoder().encode(JSON.stringify({ revision: n }));
    controller.publish(kvSubject(desiredBucket(SITE), "hv1"), bytes(8));
    controller.publish(kvSubject(desiredBucket(SITE), "hv1"), new TextEncoder().encode("not json"));
    await eventuallyTrue(() => words.length === 2);
    expect(words).toEqual([8, 0]);
    expect(writes).toEqual([]);
    expect(refusals).toHaveLength(1);
  }, 60_000);
});

/** Polls (bounded: 5 s, 20 ms steps) until the condition holds. */
async function eventuallyTrue(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !condition(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(condition()).toBe(true);
}
