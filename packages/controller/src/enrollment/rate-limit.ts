/**
 * Token buckets for enrollment: a bucket holds up to `burst` tokens and
 * gains `perSecond` a second; each enrollment takes one, and one that finds
 * none is refused. Time comes from `now()` (ms; Date.now by default).
 */
export interface RateLimit {
  /** Tokens the bucket holds at most (the burst allowed after a quiet spell). */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
}

/** One token bucket. */
export class TokenBucket {
  private tokens: number;
  private at: number;
  private readonly limit: RateLimit;
  private readonly now: () => number;

  constructor(limit: RateLimit, now: () => number = Date.now) {
    this.limit = limit;
    this.now = now;
    this.tokens = limit.burst;
    this.at = now();
  }

  /** Takes a token; false (nothing taken) when there is none. */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** True when the bucket is full again (it can be forgotten: a new one starts full). */
  full(): boolean {
    this.refill();
    return this.tokens >= this.limit.burst;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.limit.burst, this.tokens + ((t - this.at) / 1000) * this.limit.perSecond);
    this.at = t;
  }
}

/**
 * One token bucket per key (a claimed host name), in a bounded map: when
 * it holds `maxKeys`, full buckets are dropped (they would start full
 * anyway); if none is full, the key is refused (a flood of new names is
 * then limited by the site's bucket as well).
 */
export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly limit: RateLimit;
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(limit: RateLimit, maxKeys = 20_000, now: () => number = Date.now) {
    this.limit = limit;
    this.maxKeys = maxKeys;
    this.now = now;
  }

  /** Takes a token from `key`'s bucket; false when it has none (or no bucket can be kept for it). */
  take(key: string): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) {
        for (const [k, v] of this.buckets) if (v.full()) this.buckets.delete(k);
        if (this.buckets.size >= this.maxKeys) return false;
      }
      b = new TokenBucket(this.limit, this.now);
      this.buckets.set(key, b);
    }
    return b.take();
  }

  /** How many keys are tracked. */
  get size(): number {
    return this.buckets.size;
  }
}
