import { describe, expect, it } from "vitest";
import { RolloutProgress } from "./progress.ts";
import { RolloutAbort } from "./run.ts";
import type { RolloutState, RolloutStateWriter } from "./state.ts";

const state = (): RolloutState => ({
  rolloutId: "r1",
  owner: "me",
  phase: "running",
  startedAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z",
  waves: [["hv1", "hv2", "hv3"]],
  completed: [],
  failed: [],
  hosts: Object.fromEntries(["hv1", "hv2", "hv3"].map((h) => [h, { role: "vmhost" as const, target: "t", previous: null, basedOn: 0, status: "pending" as const }])),
});

/** A writer that records what each save wrote (all shards: undefined) and takes `ms` per write. */
function recorder(ms: number, fail?: Error) {
  const writes: (string[] | undefined)[] = [];
  const writer = {
    save: async (_s: RolloutState, dirty?: ReadonlySet<string>) => {
      writes.push(dirty ? [...dirty].sort() : undefined);
      await new Promise((r) => setTimeout(r, ms));
      if (fail) throw fail;
    },
  } as unknown as RolloutStateWriter;
  return { writer, writes };
}

describe("rollout progress", () => {
  it("writes every shard first, then coalesces the saves made while a write runs into one next write", async () => {
    const { writer, writes } = recorder(20);
    const progress = new RolloutProgress(state(), writer, new RolloutAbort());
    await progress.save();
    const first = progress.save("hv1");
    const shared = [progress.save("hv2"), progress.save("hv3")];
    expect(shared[0]).toBe(shared[1]);
    await Promise.all([first, ...shared]);
    expect(writes).toEqual([undefined, ["hv1"], ["hv2", "hv3"]]);
  });

  it("keeps a failed write as the rollout's fatal error, and writes nothing after it", async () => {
    const { writer, writes } = recorder(1, new Error("nats gone"));
    const abort = new RolloutAbort();
    const progress = new RolloutProgress(state(), writer, abort);
    await expect(progress.save()).rejects.toThrow("cannot write the rollout state: nats gone");
    expect(abort.fatal?.message).toBe("cannot write the rollout state: nats gone");
    await expect(progress.save("hv1")).rejects.toBe(abort.fatal);
    expect(writes).toHaveLength(1);
  });
});
