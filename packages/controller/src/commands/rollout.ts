import type { Inventory } from "@netfleet/shared";
import { LockHeldError } from "../rollout/state.ts";
import { ResumeMismatchError, Rollout, type RolloutTarget } from "../rollout/rollout.ts";
import { limitHosts, type Amount } from "../rollout/waves.ts";
import { humanRenderer, jsonRenderer } from "../rollout/render.ts";
import { compileSite } from "../compile/compile.ts";
import type { CommandOutput } from "../output.ts";
import { connectController } from "./connect.ts";

/** Exit codes of `netfleet rollout`. */
export const ROLLOUT_EXIT = { success: 0, failed: 1, invalid: 2, partial: 3, locked: 4 } as const;

/** `netfleet rollout` options, as parsed from the command line (see RolloutOptions for their meaning). */
export interface RolloutCommandOptions {
  stateDir: string;
  servers?: string[];
  check: boolean;
  batch?: Amount;
  maxFail?: Amount;
  parallel?: number;
  /** --limit patterns: host, group or role names with `*` and `?`. */
  limit?: string[];
  resume: boolean;
  abandon?: boolean;
  applyTimeoutMs?: number;
  lockStaleMs?: number;
  /** Live progress line (a terminal and not --json). */
  tty: boolean;
}

/**
 * `netfleet rollout`: compiles the site, keeps the --limit hosts, connects to the controller's
 * NATS and runs the rollout, rendering its events. Returns a ROLLOUT_EXIT code: a --limit that
 * matches nothing or a --resume that does not fit is `invalid`, a running rollout `locked`.
 */
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
  const render = out.json ? jsonRenderer(out) : humanRenderer(out, o.tty);
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
