/** What a CoalescingRunner runs, and what it tells its owner. */
export interface CoalescingRunnerOptions<T> {
  /** The work: never two runs at once. */
  run: () => Promise<T>;
  /** A run that threw (its result is then undefined); the runner itself never rejects. */
  onError: (err: unknown) => void;
  /**
   * After a run with no further run asked for: in how many ms to run again
   * by itself (a poll, a retry), or undefined for not until asked. A
   * request meanwhile runs at once and drops that scheduled run.
   */
  nextRunAfter?: (result: T | undefined) => number | undefined;
}

/**
 * Runs one piece of work on request, one run at a time. A request while a
 * run is under way asks for exactly one more run right after it; any
 * number of requests meanwhile coalesce into that one run (the work reads
 * the latest state itself, so one run catches up with all of them).
 */
export class CoalescingRunner<T = void> {
  private readonly options: CoalescingRunnerOptions<T>;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private again = false;
  private stopped = false;

  constructor(options: CoalescingRunnerOptions<T>) {
    this.options = options;
  }

  /**
   * Asks for a run: now when idle, else once more after the one under way.
   * Resolves once a run that started after this request has ended (at once
   * when stopped); never rejects.
   */
  request(): Promise<void> {
    clearTimeout(this.timer);
    if (this.stopped) return this.running ?? Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.cycle();
    return this.running;
  }

  /** No run starts any more (a run asked for or scheduled is dropped); resolves once the run under way has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private async cycle(): Promise<void> {
    for (;;) {
      this.again = false;
      let result: T | undefined;
      try {
        result = await this.options.run();
      } catch (err) {
        this.options.onError(err);
      }
      if (this.stopped) break;
      if (!this.again) {
        this.running = undefined;
        const after = this.options.nextRunAfter?.(result);
        if (after !== undefined) this.timer = setTimeout(() => void this.request(), after);
        return;
      }
    }
    this.running = undefined;
  }
}
