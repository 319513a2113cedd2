import type { Inventory } from "@netfleet/shared";
import { LockHeldError } from "../rollout/state.ts";
import { ResumeMismatchError, Rollout, type Amount, type RolloutEvent, type RolloutTarget } from "../rollout/rollout.ts";
import { compileSite } from "../compile/compile.ts";
import type { CommandOutput } from "../output.ts";
import { connectController } from "./connect.ts";

/** Exit codes of `netfleet rollout`. */
export const ROLLOUT_EXIT = { success: 0, failed: 1, invalid: 2, partial: 3, locked: 4 } as const;

export interface RolloutCommandOptions {
  stateDir: string;
  servers?: string[];
  check: boolean;
  batch?: Amount;
  maxFail?: Amount;
  parallel?: number;
  limit?: string[];
  resume: boolean;
  abandon?: boolean;
  applyTimeoutMs?: number;
  lockStaleMs?: number;
  /** Live progress line (a terminal and not --json). */
  tty: boolean;
}

function globToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
}

/** --limit: host names or group names, `*` and `?` as wildcards; a pattern that matches nothing is an error. */
export function limitHosts(inventory: Inventory, patterns: readonly string[]): { hosts: Set<string>; unmatched: string[] } {
  const hosts = new Set<string>();
  const unmatched: string[] = [];
  for (const p of patterns) {
    const re = globToRegExp(p);
    const hit = inventory.hosts.filter((h) => re.test(h.name) || h.groups.some((g) => re.test(g)) || re.test(h.role));
    if (hit.length === 0) unmatched.push(p);
    for (const h of hit) hosts.add(h.name);
  }
  return { hosts, unmatched };
}

/** Human output: one line per event; on a terminal, a live progress line below them. */
export function humanRenderer(out: CommandOutput, tty: boolean): { onEvent: (e: RolloutEvent) => void; close: () => void } {
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
      case "lock-wait":
        line(`waiting for the rollout lock of ${e.holder} to go stale (last renewed ${e.renewedAt ?? "?"})`);
        break;
      case "wave":
        progress.wave = `[wave ${e.index + 1}${e.canary ? " canary" : ""}]`;
        line(`${progress.wave} ${e.hosts.join(" ")}`);
        break;
      case "host-start":
        progress.active.add(e.host);
        line(`  ${e.host}: ${e.revision ? `revision ${e.revision} published, waiting for the agent` : "checking"}`);
        break;
      case "host-done": {
        progress.active.delete(e.host);
        progress.done++;
        if (!e.ok) progress.failed++;
        const s = e.summary ? ` ${e.summary.ok} ok, ${e.summary.changed} changed, ${e.summary.pending} would change, ${e.summary.failed} failed` : "";
        line(`  ${e.host}: ${e.ok ? "OK" : "FAILED"}${s} (${(e.ms / 1000).toFixed(1)} s)${e.error ? `: ${e.error}` : ""}`);
        for (const f of e.failures ?? []) line(`      ${f.id}: ${f.comment ?? "failed"}`);
        for (const c of e.wouldChange ?? []) line(`      would change ${c.id}${c.fields.length ? ` (${c.fields.join(", ")})` : ""}`);
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
        break;
    }
  };
  return { onEvent, close: clear };
}

export async function rolloutCommand(inventory: Inventory, o: RolloutCommandOptions, out: CommandOutput): Promise<number> {
  let assignments = compileSite(inventory);
  if (o.limit?.length) {
    const { hosts, unmatched } = limitHosts(inventory, o.limit);
    if (unmatched.length) {
      out.error(`netfleet rollout: --limit ${unmatched.join(",")} matches no host, group or role of site ${inventory.site.name}`);
      return ROLLOUT_EXIT.invalid;
    }
    assignments = assignments.filter((a) => hosts.has(a.host));
  }
  const targets: RolloutTarget[] = assignments.map((a) => ({ host: a.host, role: a.role, assignment: a }));
  const render = out.json ? { onEvent: (e: RolloutEvent) => out.line(JSON.stringify(e)), close: () => {} } : humanRenderer(out, o.tty);
  const { cp } = await connectController({ stateDir: o.stateDir, inventory, ...(o.servers ? { servers: o.servers } : {}) });
  try {
    const rollout = new Rollout(
      cp,
      targets,
      {
        check: o.check,
        resume: o.resume,
        ...(o.abandon ? { abandon: true } : {}),
        ...(o.batch ? { batch: o.batch } : {}),
        ...(o.maxFail ? { maxFail: o.maxFail } : {}),
        ...(o.parallel ? { parallel: o.parallel } : {}),
        ...(o.applyTimeoutMs ? { applyTimeoutMs: o.applyTimeoutMs } : {}),
        ...(o.lockStaleMs ? { lockStaleMs: o.lockStaleMs } : {}),
      },
      render.onEvent,
    );
    const { result } = await rollout.run();
    return ROLLOUT_EXIT[result];
  } catch (err) {
    if (err instanceof LockHeldError) {
      out.error(`netfleet rollout: refused: another rollout of ${inventory.site.name} is running (${err.message})`);
      return ROLLOUT_EXIT.locked;
    }
    if (err instanceof ResumeMismatchError) {
      out.error(`netfleet rollout: ${err.message}`);
      return ROLLOUT_EXIT.invalid;
    }
    throw err;
  } finally {
    render.close();
    await cp.close();
  }
}
