import { CLAIMS_MAX } from "../store/buckets.ts";
import type { RateLimit } from "./rate-limit.ts";

/** Enrollment rate limits (token buckets, rate-limit.ts). */
export interface EnrollmentLimits {
  /** Per claimed name (the subject's host token) for messages without a valid host token, and per host-token nonce: default 5, then 1 every 2 s. */
  perName: RateLimit;
  /** Per site, every message that would write a pending claim (site token): default 50, then 10 a second. */
  claimsPerSite: RateLimit;
  /** Per site, every message without a valid host token (before the per-name limit): default 200, then 100 a second. */
  unauthenticated: RateLimit;
  /** Pending claims kept at most (default CLAIMS_MAX, 256). */
  maxClaims: number;
  /** How long `rekey` waits for the agent to take its new credentials, ms (default 5000). */
  rekeyTimeoutMs: number;
}

/** The defaults of EnrollmentLimits. */
export const DEFAULT_ENROLLMENT_LIMITS: EnrollmentLimits = {
  perName: { burst: 5, perSecond: 0.5 },
  claimsPerSite: { burst: 50, perSecond: 10 },
  unauthenticated: { burst: 200, perSecond: 100 },
  maxClaims: CLAIMS_MAX,
  rekeyTimeoutMs: 5000,
};

/**
 * The log of refused enrollments (nothing was written for them): each is an
 * `enroll-refused` event with the claimed host and the reason, at most
 * `perSecond` a second (default 20); the ones over it are counted and
 * logged as one `enroll-refused-suppressed` event (`count`) when that second
 * is over, so a flood of hostile messages cannot flood the log.
 */
export class RefusalLog {
  private window = { second: 0, logged: 0, suppressed: 0 };
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly perSecond: number;

  constructor(log: (event: Record<string, unknown>) => void, perSecond = 20) {
    this.log = log;
    this.perSecond = perSecond;
  }

  /** Logs (or counts) one refusal; returns nothing, so `return refusals.refuse(...)` ends a handler. */
  refuse(host: string, reason: string): void {
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.window.second) this.flush(second);
    if (this.window.logged < this.perSecond) {
      this.window.logged++;
      this.log({ event: "enroll-refused", host, reason });
      return;
    }
    if (this.window.suppressed++ === 0) {
      const timer = setTimeout(() => this.flush(Math.floor(Date.now() / 1000)), 1000 - (Date.now() % 1000) + 5);
      timer.unref();
    }
  }

  private flush(second: number): void {
    if (this.window.suppressed > 0) this.log({ event: "enroll-refused-suppressed", count: this.window.suppressed });
    this.window = { second, logged: second === this.window.second ? this.window.logged : 0, suppressed: 0 };
  }
}
