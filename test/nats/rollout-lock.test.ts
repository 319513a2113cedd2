import { afterEach, describe, expect, it } from "vitest";
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { ControlPlane, HOSTS_PER_SHARD, LockHeldError, LockLostError, Rollout, rolloutShardKey, type HostProgress, type RolloutEvent, type RolloutState } from "@netfleet/controller";
import { rolloutBucket } from "@netfleet/shared";
import { Kvm } from "@nats-io/kv";
import { SITE, TOKEN, assignmentFor, inventoryHost, startSite, type Site } from "./harness.ts";

let site: Site | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

describe("rollout lock", () => {
  it("refuses a second concurrent acquire, frees on release, and keeps a resumable state record", async () => {
    site = await startSite({ basePort: 31300, hosts: [inventoryHost("hv1")] });
    const attempts = await Promise.allSettled([site.cp.lock.acquire("alice"), site.cp.lock.acquire("bob")]);
    const won = attempts.filter((a) => a.status === "fulfilled");
    const lost = attempts.filter((a) => a.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof site.cp.lock.acquire>>>).value;
    const refusal = (lost[0] as PromiseRejectedResult).reason as LockHeldError;
    expect(refusal).toBeInstanceOf(LockHeldError);
    expect(refusal.holder.owner).toBe(lease.owner);
    await expect(site.cp.lock.acquire("carol")).rejects.toThrow(new RegExp(`held by ${lease.owner}`));

    const state: RolloutState = {
      rolloutId: "r1",
      owner: lease.owner,
      phase: "running",
      startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      waves: [["hv1"], ["hv2", "hv3"]],
      completed: ["hv1"],
      failed: [],
    };
    const rev = await site.cp.lock.saveState(state, 0);
    await expect(site.cp.lock.saveState({ ...state, completed: [] }, 0)).rejects.toBeInstanceOf(LockLostError);
    expect(await site.cp.loadRolloutState()).toEqual({ state, revision: rev });

    await site.cp.lock.release(lease);
    await expect(site.cp.lock.release(lease)).rejects.toBeInstanceOf(LockLostError);
    const next = await site.cp.lock.acquire("carol");
    expect(next.owner).toBe("carol");
    // A lease from before cannot release the new holder's lock.
    await expect(site.cp.lock.release(lease)).rejects.toBeInstanceOf(LockLostError);
    expect((await site.cp.lock.holder())?.owner).toBe("carol");
  });

  it("keeps the hosts of a big rollout in shards under max_payload, rewriting only the shards that changed", async () => {
    site = await startSite({ basePort: 31310, hosts: [inventoryHost("hv1")] });
    const names = Array.from({ length: HOSTS_PER_SHARD * 2 + 10 }, (_, i) => `hv${i + 1}`);
    const progress = (): HostProgress => ({ role: "vmhost", target: "a".repeat(64), previous: { revision: 1, hash: "b".repeat(64) }, basedOn: 3, status: "pending" });
    const state: RolloutState = {
      rolloutId: "big",
      owner: "alice",
      phase: "running",
      startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      waves: [names.slice(0, 1), names.slice(1)],
      completed: [],
      failed: [],
      maxFail: 0,
      hosts: Object.fromEntries(names.map((n) => [n, progress()])),
    };
    const writer = site.cp.rolloutStateWriter(undefined);
    await writer.save(state);
    const loaded = (await site.cp.loadRolloutState())!;
    expect(loaded.state).toEqual(state);
    expect(loaded.shardRevisions).toHaveLength(3);
    expect((await site.cp.loadRolloutState({ withHosts: false }))!.state.hosts).toBeUndefined();

    // One host changes: only its shard is written, the header stays.
    const last = names.at(-1)!;
    state.hosts![last] = { ...state.hosts![last]!, status: "ok", revision: 2 };
    await writer.save(state, new Set([last]));
    const again = (await site.cp.loadRolloutState())!;
    expect(again.state.hosts![last]!.status).toBe("ok");
    expect(again.revision).toBe(loaded.revision);
    expect(again.shardRevisions!.slice(0, 2)).toEqual(loaded.shardRevisions!.slice(0, 2));
    expect(again.shardRevisions![2]).toBeGreaterThan(loaded.shardRevisions![2]!);

    // A second writer from the old revisions (a controller that lost the rollout) is refused.
    const stale = site.cp.rolloutStateWriter(loaded);
    await expect(stale.save(state, new Set([last]))).rejects.toBeInstanceOf(LockLostError);

    // Shards of another rollout under this header make the state unreadable rather than mixed.
    const kv = await new Kvm(site.cp.nc).open(rolloutBucket(SITE));
    await kv.put(rolloutShardKey(1), new TextEncoder().encode(JSON.stringify({ rolloutId: "other", hosts: {} })));
    await expect(site.cp.loadRolloutState()).rejects.toThrow(/incomplete/);
  });

  it("a rollout whose state cannot be written (over max_payload) fails with an error and frees the lock; the controller lives", async () => {
    const names = Array.from({ length: 300 }, (_, i) => `hv${i + 1}`);
    site = await startSite({ basePort: 31320, hosts: names.map((n) => inventoryHost(n)) });
    // 16 KB: a shard of 256 hosts does not fit.
    await appendFile(site.server.nodes[0]!.configFile, "max_payload: 16384\n");
    await site.cp.userSync.sync();
    const cp = await ControlPlane.connect({
      site: SITE,
      servers: site.server.urls,
      user: "controller",
      password: site.controllerPassword,
      hosts: names.map((n) => inventoryHost(n)),
      enrollmentToken: TOKEN,
      enrollmentPassword: site.enrollPassword,
      signing: site.signing,
      credentialsDir: join(site.dir, "credentials"),
    });
    try {
      expect(cp.nc.info?.max_payload).toBe(16384);
      const events: RolloutEvent[] = [];
      const targets = names.map((host) => ({ host, role: "vmhost" as const, assignment: assignmentFor(host, 1) }));
      await expect(new Rollout(cp, targets, { lockRenewMs: 200 }, (e) => events.push(e)).run()).rejects.toThrow(/max_payload/);
      expect(events.some((e) => e.event === "host-start")).toBe(false);
      const lease = await cp.lock.acquire("next");
      await cp.lock.release(lease);
    } finally {
      await cp.close();
    }
  });
});
