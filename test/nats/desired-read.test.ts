import { afterEach, describe, expect, it } from "vitest";
import { readDesired } from "../../packages/agent/src/fleet/desired.ts";
import { SITE, assignmentFor, inventoryHost, startSite, stopAll, type Site } from "./harness.ts";

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
