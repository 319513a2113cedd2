import type { FieldChange, Report } from "@netfleet/shared";
import type { HostDiffStatus, ResourceDiff } from "./diff.ts";

/** How a rollout ended: every host verified, some failed within the budget, or stopped (and reverted). */
export type RolloutResult = "success" | "partial" | "failed";

/**
 * What a rollout reports as it goes, in order; rendered one line each (or as JSON lines with --json).
 * Times `ms` are milliseconds since the host's (or, for `done`, the rollout's) start. In check mode
 * nothing is published: `host-done` carries `wouldChange` and no revision, and there is no revert.
 */
export type RolloutEvent =
  | { event: "rollout"; rolloutId: string; site: string; check: boolean; resume: boolean; waves: string[][]; maxFail: number; unchanged: string[] }
  | { event: "diff"; host: string; role: string; status: HostDiffStatus; from: { revision: number; hash: string } | null; to: string; diff: ResourceDiff }
  | { event: "lock-wait"; holder: string; renewedAt: string | undefined }
  | { event: "wave"; index: number; canary: boolean; hosts: string[] }
  | { event: "host-start"; host: string; revision?: number; /** Agent rollouts: the version the host is to run. */ agent?: string }
  | {
      event: "host-done";
      host: string;
      ok: boolean;
      revision?: number;
      summary?: Report["summary"];
      failures?: { id: string; comment?: string }[];
      /** Check mode: per resource the fields that would change, their values before and after (1.2), and the unified diff of a text resource (1.2). */
      wouldChange?: { id: string; fields: string[]; values?: FieldChange[]; diff?: string }[];
      error?: string;
      ms: number;
    }
  | { event: "budget-exceeded"; failed: string[]; maxFail: number; canary: boolean }
  | { event: "revert-start"; hosts: string[] }
  | { event: "host-reverted"; host: string; ok: boolean; revision?: number; error?: string }
  | { event: "lock-lost"; error: string }
  // Agent rollouts (rollout/agent.ts): the bundle stored, and per host the version it runs and whether it is upgraded.
  | { event: "agent-bundle"; version: string; sha256: string; size: number; object: string }
  | { event: "agent-diff"; host: string; role: string; from: string | null; to: string; status: "upgrade" | "unchanged" }
  | {
      event: "done";
      result: RolloutResult;
      ok: string[];
      failed: string[];
      /** Every host of `failed` with why it failed (its host-done or host-reverted error). */
      reasons: Record<string, string>;
      reverted: string[];
      skipped: string[];
      unchanged: string[];
      ms: number;
    };
