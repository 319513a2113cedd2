import { afterEach, describe, expect, it } from "vitest";
import { LockHeldError, LockLostError, type RolloutState } from "@netfleet/controller";
import { inventoryHost, startSite, type Site } from "./harness.ts";

let site: Site | undefined;
afterEach(async () => {
  await site?.close();
  site = undefined;
});

describe("rollout lock", () => {
  it("refuses a second concurrent acquire, frees on release, and keeps a resumable state record", async () => {
    site = await startSite({ basePort: 31300, hosts: [inventoryHost("hv1")] });
    const attempts = await Promise.allSettled([site.cp.acquireLock("alice"), site.cp.acquireLock("bob")]);
    const won = attempts.filter((a) => a.status === "fulfilled");
    const lost = attempts.filter((a) => a.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof site.cp.acquireLock>>>).value;
    const refusal = (lost[0] as PromiseRejectedResult).reason as LockHeldError;
    expect(refusal).toBeInstanceOf(LockHeldError);
    expect(refusal.holder.owner).toBe(lease.owner);
    await expect(site.cp.acquireLock("carol")).rejects.toThrow(new RegExp(`held by ${lease.owner}`));

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
    const rev = await site.cp.saveRolloutState(state, 0);
    await expect(site.cp.saveRolloutState({ ...state, completed: [] }, 0)).rejects.toBeInstanceOf(LockLostError);
    expect(await site.cp.loadRolloutState()).toEqual({ state, revision: rev });

    await site.cp.releaseLock(lease);
    await expect(site.cp.releaseLock(lease)).rejects.toBeInstanceOf(LockLostError);
    const next = await site.cp.acquireLock("carol");
    expect(next.owner).toBe("carol");
    // A lease from before cannot release the new holder's lock.
    await expect(site.cp.releaseLock(lease)).rejects.toBeInstanceOf(LockLostError);
    expect((await site.cp.lock.holder())?.owner).toBe("carol");
  });
});
