import { describe, expect, it } from "vitest";
import type { RolloutEvent } from "./events.ts";
import { RolloutAbort, runWaves } from "./run.ts";
import { LockLostError } from "./state.ts";

/** A run over `waves` where the hosts in `failing` fail; records the hosts run and the events. */
function fake(waves: string[][], failing: string[], maxFail: number, extra: { due?: (h: string) => boolean; throwOn?: string } = {}) {
  const ran: string[] = [];
  const failed: string[] = [];
  const events: RolloutEvent[] = [];
  const abort = new RolloutAbort();
  const run = runWaves({
    waves,
    maxFail,
    parallel: 1,
    abort,
    emit: (e) => events.push(e),
    ...(extra.due ? { due: extra.due } : {}),
    host: async (h) => {
      if (h === extra.throwOn) throw new LockLostError("taken over");
      ran.push(h);
      if (failing.includes(h)) failed.push(h);
      return failing.includes(h);
    },
    failed: () => [...failed],
  });
  return { run, ran, events, abort };
}

describe("the wave runner", () => {
  it("runs every wave when nothing fails beyond the budget", async () => {
    const f = fake([["gw1"], ["hv1", "hv2"], ["hv3"]], ["hv2"], 1);
    expect(await f.run).toBeUndefined();
    expect(f.ran).toEqual(["gw1", "hv1", "hv2", "hv3"]);
    expect(f.events.filter((e) => e.event === "wave")).toEqual([
      { event: "wave", index: 0, canary: true, hosts: ["gw1"] },
      { event: "wave", index: 1, canary: false, hosts: ["hv1", "hv2"] },
      { event: "wave", index: 2, canary: false, hosts: ["hv3"] },
    ]);
  });

  it("stops on a failed canary whatever the budget", async () => {
    const f = fake([["gw1"], ["hv1"]], ["gw1"], 5);
    expect(await f.run).toBe(0);
    expect(f.ran).toEqual(["gw1"]);
    expect(f.events.at(-1)).toEqual({ event: "budget-exceeded", failed: ["gw1"], maxFail: 5, canary: true });
  });

  it("stops over the budget and starts no more hosts", async () => {
    const f = fake([["gw1"], ["hv1", "hv2", "hv3"], ["hv4"]], ["hv1", "hv2"], 1);
    expect(await f.run).toBe(1);
    expect(f.ran).toEqual(["gw1", "hv1", "hv2"]);
    expect(f.events.at(-1)).toEqual({ event: "budget-exceeded", failed: ["hv1", "hv2"], maxFail: 1, canary: false });
  });

  it("skips hosts no longer due and waves with none", async () => {
    const f = fake([["gw1"], ["hv1", "hv2"]], [], 0, { due: (h) => h === "hv2" });
    expect(await f.run).toBeUndefined();
    expect(f.ran).toEqual(["hv2"]);
    expect(f.events).toEqual([{ event: "wave", index: 1, canary: false, hosts: ["hv2"] }]);
  });

  it("ends the run with what aborted it", async () => {
    const f = fake([["gw1"], ["hv1", "hv2"]], [], 0, { throwOn: "hv1" });
    await expect(f.run).rejects.toThrow(LockLostError);
    expect(f.abort.lockLost).toBe("taken over");
  });
});
