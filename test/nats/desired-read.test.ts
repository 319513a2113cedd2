import { afterEach, describe, expect, it } from "vitest";
import { desiredBucket, kvSubject } from "@netfleet/shared";
import { PENDING_HINTS, readDesired, watchDesired, type DesiredWrite } from "../../packages/agent/src/fleet/desired.ts";
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
 * watchDesired's waiting writes, on a real nats-server: what settles a heard
 * write (its word, a word for a later write, the wait, the bound), and a
 * word for bytes never heard. The controller's connection plays both sides:
 * it may publish on the key's subject and on the stored subject.
 */
describe("watchDesired: writes waiting for the controller's word", () => {
  it("a word settles the write it names (sequence) and the ones before it (none); the others settle after the wait; past the bound the oldest at once; a word for bytes not heard is passed on", async () => {
    site = await startSite({ basePort: 26350, hosts: [inventoryHost("hv1")] });
    const nc = site.cp.nc;
    const writes: DesiredWrite[] = [];
    const words: number[] = [];
    watchDesired(nc, SITE, "hv1", { written: (w) => void writes.push(w), word: (r) => void words.push(r) }, 600);
    await nc.flush();
    const bytes = (n: number) => new TextEncoder().encode(JSON.stringify({ revision: n, pad: "x".repeat(n) }));
    const write = (n: number) => nc.publish(kvSubject(desiredBucket(SITE), "hv1"), bytes(n));
    const word = (n: number, seq: number) => sendStoredWord(nc, "hv1", bytes(n), seq, n);
    const settled = (w: DesiredWrite) => Promise.race([w.stored, new Promise((r) => setTimeout(() => r("waiting"), 100))]);

    for (const n of [1, 2, 3]) write(n);
    await nc.flush();
    await eventuallyTrue(() => writes.length === 3);
    expect(writes.map((w) => w.revision)).toEqual([1, 2, 3]);
    const t = Date.now();
    word(2, 42);
    expect(await writes[1]!.stored).toBe(42);
    expect(await writes[0]!.stored).toBeUndefined();
    expect(await settled(writes[2]!)).toBe("waiting");
    expect(await writes[2]!.stored).toBeUndefined();
    expect(Date.now() - t).toBeGreaterThanOrEqual(400);

    // A word for bytes never heard (revision 9) is passed on with its revision; no write settles with it.
    word(9, 43);
    await eventuallyTrue(() => words.length === 1);
    expect(words).toEqual([9]);

    // One more than the bound: the oldest settles at once, unconfirmed; the rest still wait.
    writes.length = 0;
    for (let n = 10; n < 10 + PENDING_HINTS + 1; n++) write(n);
    await nc.flush();
    await eventuallyTrue(() => writes.length === PENDING_HINTS + 1);
    expect(await settled(writes[0]!)).toBeUndefined();
    expect(await settled(writes[1]!)).toBe("waiting");
    // ... and the word for the last settles them all: the last with its sequence.
    word(10 + PENDING_HINTS, 44);
    expect(await writes.at(-1)!.stored).toBe(44);
    expect(await Promise.all(writes.slice(1, -1).map((w) => settled(w)))).toEqual(new Array(PENDING_HINTS - 1).fill(undefined));
  }, 60_000);
});

/** Polls (bounded: 5 s, 20 ms steps) until the condition holds. */
async function eventuallyTrue(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !condition(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(condition()).toBe(true);
}
