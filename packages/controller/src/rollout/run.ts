import PQueue from "p-queue";
import type { RolloutEvent } from "./events.ts";
import { LockLostError } from "./state.ts";

/**
 * What ends a whole rollout early: its lock lost (someone took it over; `lockLost` holds why) or
 * an error that leaves its state unwritable (`fatal`). The first of each is kept; once either is
 * set, no more hosts are started.
 */
export class RolloutAbort {
  lockLost: string | undefined;
  fatal: Error | undefined;

  get aborted(): boolean {
    return Boolean(this.lockLost || this.fatal);
  }

  /** Keeps `err`: a LockLostError as the lock lost, anything else as fatal. */
  abort(err: unknown): void {
    if (err instanceof LockLostError) this.lockLost ??= err.message;
    else this.fatal ??= err as Error;
  }

  /** Throws a LockLostError when the lock is lost, else the fatal error, if any. */
  throwIfAborted(): void {
    if (this.lockLost) throw new LockLostError(this.lockLost);
    if (this.fatal) throw this.fatal;
  }
}

/**
 * Runs `step` for each host, `parallel` at a time (default: all at once); a step calls `drop`
 * to leave the hosts not started yet. A step that rejects ends the run: its error goes to `abort`,
 * the hosts not started are dropped, and once the running ones are done the abort is thrown.
 */
export async function forEachHost(hosts: readonly string[], parallel: number | undefined, abort: RolloutAbort, step: (host: string, drop: () => void) => Promise<void>): Promise<void> {
  const queue = new PQueue({ concurrency: parallel ?? Math.max(1, hosts.length) });
  for (const host of hosts) {
    void queue
      .add(() => step(host, () => queue.clear()))
      .catch((err: unknown) => {
        abort.abort(err);
        queue.clear();
      });
  }
  await queue.onIdle();
  abort.throwIfAborted();
}

/** One run of waves, in apply mode (publish and verify) or check mode (ask what would change). */
export interface WaveRun {
  /** Host names, canary wave first. */
  waves: readonly (readonly string[])[];
  /** Failed hosts allowed before the run stops; a failed canary stops it whatever the budget. */
  maxFail: number;
  /** Hosts run at once within a wave (default: the whole wave). */
  parallel: number | undefined;
  abort: RolloutAbort;
  emit: (e: RolloutEvent) => void;
  /** Whether a host still has to run (a resumed rollout skips those done); default: every host. */
  due?: (host: string) => boolean;
  /** Applies or checks one host, emitting its events; resolves true when it failed. Rejects only to end the whole run (see RolloutAbort). */
  host: (host: string) => Promise<boolean>;
  /** Every failed host so far (a resumed rollout's earlier ones included). */
  failed: () => string[];
}

/**
 * The wave loop of apply and check mode: each wave's due hosts run (`parallel` at a time); when a
 * host fails in the canary wave, or the failed hosts exceed `maxFail`, no more hosts start, the run
 * emits `budget-exceeded` and returns the index of that wave. Returns undefined when every wave ran;
 * throws what aborted it (RolloutAbort).
 */
export async function runWaves(run: WaveRun): Promise<number | undefined> {
  for (const [index, wave] of run.waves.entries()) {
    const hosts = run.due ? wave.filter(run.due) : [...wave];
    if (hosts.length === 0) continue;
    run.emit({ event: "wave", index, canary: index === 0, hosts });
    let stop = false;
    await forEachHost(hosts, run.parallel, run.abort, async (host, drop) => {
      if (stop || run.abort.aborted) return;
      const failed = await run.host(host);
      if (failed && (index === 0 || run.failed().length > run.maxFail)) {
        stop = true;
        drop();
      }
    });
    if (stop) {
      run.emit({ event: "budget-exceeded", failed: run.failed(), maxFail: run.maxFail, canary: index === 0 });
      return index;
    }
  }
  return undefined;
}
