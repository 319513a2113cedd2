import type { Runner } from "@netfleet/agent";


/**
 * What a probe saw: traffic got through or not; a lease or none; a name
 * resolved to the expected address, or refused; an answer that is not the
 * right one (a lease or a name); traffic arrived from the backend's address
 * (masqueraded) or from the VM's own.
 */
export type Outcome = "reach" | "blocked" | "lease" | "no-lease" | "resolve" | "refused" | "wrong-answer" | "masqueraded" | "unmasqueraded";

/**
 * One row of the connectivity report. `got` is "error" when the probe could
 * not tell (a tool that did not run, a capture that did not start, a positive
 * control that was not seen): never a pass. `ms` is the row's wall time; the
 * one-way rows share one phase and each carries that phase's time.
 */
export interface CheckRow {
  check: string;
  from: string;
  to: string;
  expect: Outcome;
  got: Outcome | "error";
  ok: boolean;
  detail?: string;
  ms?: number;
}

/** What a probe found: the outcome (or "error" when the probe itself failed) and what to show with it. */
export interface Answer {
  got: Outcome | "error";
  detail?: string;
}

/** One row to run: what it claims, and the probe that checks the claim. */
export interface Probe {
  check: string;
  from: string;
  to: string;
  expect: Outcome;
  /** Rows of the one-way phase (captures, VMs changed for a moment): run after the others, alone. */
  exclusive?: boolean;
  run: (runner: Runner) => Promise<Answer>;
}
