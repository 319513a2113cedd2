import { describe, expect, it } from "vitest";
import { CoalescingRunner } from "./coalescing-runner.ts";

/** A run the test lets end when it wants: `release()` ends the oldest run under way. */
function gatedWork() {
  const gates: (() => void)[] = [];
  let runs = 0;
  let concurrent = 0;
  let maxConcurrent = 0;
  const run = async (): Promise<number> => {
    runs++;
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    await new Promise<void>((resolve) => gates.push(resolve));
    concurrent--;
    return runs;
  };
  const release = async () => {
    gates.shift()?.();
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  return { run, release, stats: () => ({ runs, maxConcurrent, waiting: gates.length }) };
}

describe("CoalescingRunner", () => {
  it("runs at once when idle, and tells nextRunAfter the run's result", async () => {
    const work = gatedWork();
    const rested: (number | undefined)[] = [];
    const runner = new CoalescingRunner<number>({ run: work.run, onError: () => {}, nextRunAfter: (r) => void rested.push(r) });
    const done = runner.request();
    expect(work.stats().runs).toBe(1);
    await work.release();
    await done;
    expect(rested).toEqual([1]);
  });

  it("coalesces requests during a run into exactly one more run after it, never two at once", async () => {
    const work = gatedWork();
    const rested: (number | undefined)[] = [];
    const runner = new CoalescingRunner<number>({ run: work.run, onError: () => {}, nextRunAfter: (r) => void rested.push(r) });
    const first = runner.request();
    const second = runner.request();
    const third = runner.request();
    expect(work.stats()).toEqual({ runs: 1, maxConcurrent: 1, waiting: 1 });
    await work.release();
    expect(work.stats()).toEqual({ runs: 2, maxConcurrent: 1, waiting: 1 });
    // nextRunAfter only once no further run was asked for.
    expect(rested).toEqual([]);
    await work.release();
    await Promise.all([first, second, third]);
    expect(work.stats().runs).toBe(2);
    expect(rested).toEqual([2]);
  });

  it("a request's promise resolves only after a run that started after it", async () => {
    const work = gatedWork();
    const runner = new CoalescingRunner<number>({ run: work.run, onError: () => {} });
    void runner.request();
    let laterDone = false;
    const later = runner.request().then(() => (laterDone = true));
    await work.release();
    expect(laterDone).toBe(false);
    await work.release();
    await later;
    expect(laterDone).toBe(true);
  });

  it("hands a run's error to onError, nextRunAfter gets undefined, and runs again on the next request", async () => {
    const errors: string[] = [];
    const rested: (number | undefined)[] = [];
    let calls = 0;
    const runner = new CoalescingRunner<number>({
      run: async () => {
        calls++;
        if (calls === 1) throw new Error("boom");
        return calls;
      },
      onError: (err) => errors.push((err as Error).message),
      nextRunAfter: (r) => void rested.push(r),
    });
    await runner.request();
    await runner.request();
    expect(errors).toEqual(["boom"]);
    expect(rested).toEqual([undefined, 2]);
  });

  it("stop drops a requested run, waits for the one under way, and refuses new ones", async () => {
    const work = gatedWork();
    const rested: (number | undefined)[] = [];
    const runner = new CoalescingRunner<number>({ run: work.run, onError: () => {}, nextRunAfter: (r) => void rested.push(r) });
    void runner.request();
    void runner.request();
    let stopped = false;
    const stopping = runner.stop().then(() => (stopped = true));
    await Promise.resolve();
    expect(stopped).toBe(false);
    await work.release();
    await stopping;
    await runner.request();
    expect(work.stats().runs).toBe(1);
    expect(rested).toEqual([]);
  });

  it("runs again by itself after nextRunAfter's delay; a request meanwhile runs at once instead", async () => {
    let runs = 0;
    const runner = new CoalescingRunner<number>({ run: async () => ++runs, onError: () => {}, nextRunAfter: (n) => (n !== undefined && n < 3 ? 20 : undefined) });
    await runner.request();
    expect(runs).toBe(1);
    await new Promise((r) => setTimeout(r, 60));
    // 1 -> scheduled 2 -> scheduled 3 -> no more.
    expect(runs).toBe(3);
    await new Promise((r) => setTimeout(r, 60));
    expect(runs).toBe(3);
    const early = new CoalescingRunner<number>({ run: async () => ++runs, onError: () => {}, nextRunAfter: () => 10_000 });
    await early.request();
    await early.request();
    expect(runs).toBe(5);
    await early.stop();
  });
});
