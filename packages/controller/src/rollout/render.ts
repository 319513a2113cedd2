import { renderChanges, type ChangeText } from "@netfleet/shared";
import type { CommandOutput } from "../output.ts";
import type { RolloutEvent } from "./events.ts";

/**
 * What a check reply says would change in one resource, as the agent's
 * `apply --check` prints it (renderChanges): old -> new per field, then the
 * unified diff. Nothing when the agent sent only field names (protocol 1.1).
 */
export function wouldChangeLines(c: { values?: readonly ChangeText[]; diff?: string }): string[] {
  if (!c.values?.length && !c.diff) return [];
  return renderChanges(c.values ?? [], c.diff);
}

/** Failed hosts named with their reason under the final line of human output. */
const FAILED_SHOWN = 20;

/** Renders a rollout's events as they come; `close` ends the output (clears a live progress line). */
export interface RolloutRenderer {
  onEvent: (e: RolloutEvent) => void;
  close: () => void;
}

/** `--json`: each event as one JSON line, as emitted. */
export function jsonRenderer(out: CommandOutput): RolloutRenderer {
  return { onEvent: (e) => out.line(JSON.stringify(e)), close: () => {} };
}

/**
 * Human output: one line per event; with `tty` (a terminal), a live progress line below them,
 * rewritten in place on stdout (the wave, hosts done/failed of the total, hosts being applied).
 */
export function humanRenderer(out: CommandOutput, tty: boolean): RolloutRenderer {
  const progress = { total: 0, done: 0, failed: 0, active: new Set<string>(), wave: "" };
  let live = false;
  const clear = () => {
    if (live) process.stdout.write("\r\x1b[2K");
    live = false;
  };
  const line = (text: string) => {
    clear();
    out.line(text);
    if (tty && progress.total > 0) {
      process.stdout.write(`${progress.wave} ${progress.done}/${progress.total} done, ${progress.failed} failed${progress.active.size ? `, applying: ${[...progress.active].slice(0, 6).join(" ")}` : ""}`);
      live = true;
    }
  };
  const onEvent = (e: RolloutEvent) => {
    switch (e.event) {
      case "diff": {
        const parts = [
          e.diff.added.length ? `+${e.diff.added.length} ${e.diff.added.join(" ")}` : "",
          e.diff.removed.length ? `-${e.diff.removed.length} ${e.diff.removed.join(" ")}` : "",
          ...e.diff.changed.map((c) => `~${c.id} (${c.fields.join(", ")})`),
        ].filter(Boolean);
        const head = e.status === "new" ? "new assignment" : e.status === "unchanged" ? "unchanged" : e.status === "unconverged" ? `same assignment, not yet applied (revision ${e.from?.revision})` : `changes (from revision ${e.from?.revision})`;
        line(`${e.host} (${e.role}): ${head}`);
        if (e.status === "changed") for (const p of parts) line(`    ${p}`);
        if (e.status === "new") line(`    ${e.diff.added.length} resources`);
        break;
      }
      case "rollout":
        progress.total = e.waves.flat().length;
        line(`${e.check ? "check of " : ""}rollout ${e.rolloutId}${e.resume ? " (resumed)" : ""}: ${progress.total} hosts in ${e.waves.length} waves (${e.waves.map((w) => w.length).join("+")}), failure budget ${e.maxFail}${e.unchanged.length ? `; ${e.unchanged.length} unchanged` : ""}`);
        break;
      case "agent-bundle":
        line(`agent bundle ${e.version}: ${e.size} bytes, sha256 ${e.sha256}, stored as ${e.object}`);
        break;
      case "agent-diff":
        line(`${e.host} (${e.role}): ${e.status === "unchanged" ? `already runs ${e.to}` : `agent ${e.from ?? "(never reported)"} -> ${e.to}`}`);
        break;
      case "lock-wait":
        line(`waiting for the rollout lock of ${e.holder} to go stale (last renewed ${e.renewedAt ?? "?"})`);
        break;
      case "wave":
        progress.wave = `[wave ${e.index + 1}${e.canary ? " canary" : ""}]`;
        line(`${progress.wave} ${e.hosts.join(" ")}`);
        break;
      case "host-start":
        progress.active.add(e.host);
        line(`  ${e.host}: ${e.revision ? `revision ${e.revision} published, waiting for the agent` : e.agent ? `target set, waiting for the agent to run ${e.agent}` : "checking"}`);
        break;
      case "host-done": {
        progress.active.delete(e.host);
        progress.done++;
        if (!e.ok) progress.failed++;
        const s = e.summary ? ` ${e.summary.ok} ok, ${e.summary.changed} changed, ${e.summary.pending} would change, ${e.summary.failed} failed` : "";
        line(`  ${e.host}: ${e.ok ? "OK" : "FAILED"}${s} (${(e.ms / 1000).toFixed(1)} s)${e.error ? `: ${e.error}` : ""}`);
        for (const f of e.failures ?? []) line(`      ${f.id}: ${f.comment ?? "failed"}`);
        for (const c of e.wouldChange ?? []) {
          line(`      would change ${c.id}${c.fields.length ? ` (${c.fields.join(", ")})` : ""}`);
          for (const l of wouldChangeLines(c)) line(`          ${l}`);
        }
        break;
      }
      case "budget-exceeded":
        line(`STOP: ${e.canary ? "the canary failed" : `${e.failed.length} failed hosts exceed the budget of ${e.maxFail}`} (${e.failed.join(", ")})`);
        break;
      case "revert-start":
        line(`reverting ${e.hosts.length} hosts changed by this rollout: ${e.hosts.join(" ") || "(none)"}`);
        break;
      case "host-reverted":
        line(`  ${e.host}: ${e.ok ? `reverted (revision ${e.revision})` : `NOT reverted: ${e.error}`}`);
        break;
      case "lock-lost":
        line(`lost the rollout lock: ${e.error}`);
        break;
      case "done":
        progress.total = 0;
        line(`${e.result.toUpperCase()}: ${e.ok.length} ok, ${e.failed.length} failed, ${e.reverted.length} reverted, ${e.skipped.length} not attempted, ${e.unchanged.length} unchanged (${(e.ms / 1000).toFixed(1)} s)`);
        // Why each host failed, the first FAILED_SHOWN of them (--json lists every one in `reasons`).
        for (const h of e.failed.slice(0, FAILED_SHOWN)) line(`  ${h} failed: ${e.reasons[h] ?? "no reason recorded"}`);
        if (e.failed.length > FAILED_SHOWN) line(`  ... and ${e.failed.length - FAILED_SHOWN} more failed hosts (--json gives every host's reason)`);
        break;
    }
  };
  return { onEvent, close: clear };
}
