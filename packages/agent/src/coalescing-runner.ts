/** What a CoalescingRunner runs, and what it tells its owner. */
export interface CoalescingRunnerOptions<T> {
  /** The work: never two runs at once. */
  run: () => Promise<T>;
  /** A run that threw (its result is then undefined); the runner itself never rejects. */
  onError: (err: unknown) => void;
  /** A run ended with no further run asked for (and the runner not stopped): e.g. where the owner schedules its next poll or retry. */
  rested?: (result: T | undefined) => void;
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
    if (this.stopped) return this.running ?? Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.cycle();
    return this.running;
  }

  /** No run starts any more (a run asked for is dropped); resolves once the run under way has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
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
        this.options.rested?.(result);
        return;
      }
    }
    this.running = undefined;
  }
}
