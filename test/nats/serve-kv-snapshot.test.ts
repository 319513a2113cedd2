/**
 * snapshot() (store/kv.ts), which serve's registry and desired-state reads
 * use, completes when the stream's last message is gone (its subject purged,
 * as the registry does with a claim): it used to wait for that sequence and
 * fail after 30 s. It also missed keys written between its two reads (the
 * stream's last sequence, then the watch): status then counted an enrolled
 * host as never enrolled. Real nats-server on loopback, port 32290.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { NatsServer } from "@netfleet/controller";
import { snapshot } from "../../packages/controller/src/store/kv.ts";

let server: NatsServer | undefined;
let nc: NatsConnection | undefined;
let dir = "";

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("snapshot of a KV bucket", () => {
  it("completes when the last message was purged, with the keys that remain (control: every live key is in)", async () => {
    dir = await mkdtemp(join(tmpdir(), "serve-kv-"));
    server = await NatsServer.start({ dir, nodes: 1, basePort: 32290, users: [{ user: "u", password: "p" }] });
    nc = await connect({ servers: server.urls, user: "u", pass: "p" });
    const kv = await new Kvm(nc).create("snap", { history: 1 });
    await kv.put("a", "1");
    await kv.put("c", "3");
    await kv.put("b", "2");
    await (await jetstreamManager(nc)).streams.purge("KV_snap", { filter: "$KV.snap.b" });
    const t0 = Date.now();
    const values = await snapshot(kv, 10_000);
    expect([...values.keys()].sort()).toEqual(["a", "c"]);
    expect(Date.now() - t0).toBeLessThan(2000);
    // An empty bucket whose messages were all purged: empty at once.
    await (await jetstreamManager(nc)).streams.purge("KV_snap");
    expect((await snapshot(kv, 10_000)).size).toBe(0);
  });

  it("holds every key while the keys are being rewritten (a put every 5 ms, round robin): 200 snapshots, none misses one", async () => {
    const kv = await new Kvm(nc!).create("busy", { history: 5 });
    const keys = ["h1", "h2", "h3"];
    for (const k of keys) await kv.put(k, "0");
    let writing = true;
    const writer = (async () => {
      // Bounded: stops when the snapshots are done, or after 2,000 puts.
      for (let i = 1; writing && i <= 2000; i++) {
        await kv.put(keys[i % keys.length]!, String(i));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const missing: string[][] = [];
    try {
      for (let n = 0; n < 200; n++) {
        const got = await snapshot(kv, 10_000);
        const lost = keys.filter((k) => !got.has(k));
        if (lost.length) missing.push(lost);
      }
    } finally {
      writing = false;
      await writer;
    }
    expect(missing).toEqual([]);
  }, 60_000);
});
