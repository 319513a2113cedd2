import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { escapeText, type Inventory } from "@netfleet/shared";
import { LockHeldError } from "../rollout/state.ts";
import { ResumeMismatchError, Rollout, RolloutCancelledError, type RolloutTarget } from "../rollout/rollout.ts";
import { askYesNo, planSummaryLines, rolloutSummaryLine, type Terminal } from "../rollout/confirm.ts";
import { PlanFileError, planSignedBy, readPlanFile, signPlan, writePlanFile, type PlanFile } from "../rollout/plan-file.ts";
import { PlanStaleError, inventoryRefusals, makePlan } from "../rollout/planned.ts";
import type { Amount, MaxPer } from "../rollout/waves.ts";
import { LimitError, selectLimit } from "../select/limit.ts";
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
  /** At most this many hosts with one value of an inventory label per wave (--max-per rack=1). */
  maxPer?: MaxPer;
  parallel?: number;
  /** --limit patterns: host, group or role names with `*` and `?`. */
  limit?: string[];
  resume: boolean;
  abandon?: boolean;
  applyTimeoutMs?: number;
  confirmWindowMs?: number;
  lockStaleMs?: number;
  /** Live progress line (a terminal and not --json). */
  tty: boolean;
  /** With `check`: write the plan (every host's target, desired KV revision and observed-state hash) to this file. */
  out?: string;
  /** Apply this plan file (written by --check --out) exactly: its hosts, its assignments, against what it was made. */
  plan?: string;
  /** Ask on this terminal before publishing (a rollout from a terminal without --yes); undefined: do not ask. */
  terminal?: Terminal;
  /** The site folder as given (named in the hint printed after --out). */
  siteDir?: string;
}

/** A word for a shell command line: as it is when plain, else single-quoted (POSIX sh quoting). */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${escapeText(text).replace(/'/g, "'\\''")}'`;
}

/** Why a plan cannot be written at `file` (its folder missing or not writable, or a folder in its place), or undefined. */
async function unwritable(file: string): Promise<string | undefined> {
  const st = await stat(file).catch(() => undefined);
  if (st?.isDirectory()) return "a directory; give a file name";
  return access(dirname(file), constants.W_OK).then(
    () => undefined,
    (err: NodeJS.ErrnoException) => `cannot write in ${escapeText(dirname(file))} (${err.code ?? err.message})`,
  );
}

/** The hosts --limit selects, or undefined after one line saying which term matches nothing (or that nothing is selected). */
function limited(inventory: Inventory, limit: readonly string[], out: CommandOutput): Set<string> | undefined {
  try {
    return selectLimit(inventory.hosts, limit, inventory.site.name);
  } catch (err) {
    if (!(err instanceof LimitError)) throw err;
    out.error(`netfleet rollout: ${err.message}`);
    return undefined;
  }
}

/** The plan file `file`, or undefined after one line naming the file and the problem. */
async function loadPlan(file: string, out: CommandOutput): Promise<PlanFile | undefined> {
  try {
    return await readPlanFile(file);
  } catch (err) {
    if (!(err instanceof PlanFileError)) throw err;
    out.error(`netfleet rollout: --plan ${err.message}`);
    return undefined;
  }
}

/**
 * `netfleet rollout`: compiles the site, keeps the --limit hosts (or the plan's, checked against
 * it), connects to the controller's NATS and runs the rollout, rendering its events; with a
 * terminal it asks before publishing, and with --check --out it writes the plan file. Returns a
 * ROLLOUT_EXIT code: a --limit that matches nothing, a --resume that does not fit, a bad or stale
 * plan are `invalid`, a running rollout `locked`, a rollout declined at the question `failed`.
 */
export async function rolloutCommand(inventory: Inventory, o: RolloutCommandOptions, out: CommandOutput): Promise<number> {
  let assignments = compileSite(inventory);
  const plan = o.plan === undefined ? undefined : await loadPlan(o.plan, out);
  if (o.plan !== undefined && !plan) return ROLLOUT_EXIT.invalid;
  if (!plan && o.limit?.length) {
    const hosts = limited(inventory, o.limit, out);
    if (!hosts) return ROLLOUT_EXIT.invalid;
    assignments = assignments.filter((a) => hosts.has(a.host));
  }
  // Where the plan goes is tried before the check, not after it.
  if (o.out !== undefined) {
    const problem = await unwritable(o.out);
    if (problem) {
      out.error(`netfleet rollout: --out ${escapeText(o.out)}: ${problem}`);
      return ROLLOUT_EXIT.invalid;
    }
  }
  if (o.maxPer && !assignments.some((a) => inventory.hosts.find((h) => h.name === a.host)?.labels[o.maxPer!.key] !== undefined)) {
    out.error(`netfleet rollout: --max-per ${o.maxPer.key}=${o.maxPer.count}: no host of this rollout of site ${inventory.site.name} has the label ${o.maxPer.key}`);
    return ROLLOUT_EXIT.invalid;
  }
  const { cp } = await connectController({ stateDir: o.stateDir, inventory, ...(o.servers ? { servers: o.servers } : {}) });
  const terminal = o.terminal;
  const render = out.json ? jsonRenderer(out) : humanRenderer(out, o.tty);
  try {
    if (plan) {
      const file = escapeText(o.plan!);
      // Nothing in the file is trusted before its signature: an edited status or change list would mislead the question.
      if (!planSignedBy(plan, cp.options.signing)) {
        out.error(`netfleet rollout: --plan ${file}: not signed by this controller's key (edited since it was written, or made by another controller or key); make a new plan with --check --out`);
        return ROLLOUT_EXIT.invalid;
      }
      const refusals = inventoryRefusals(plan, inventory.site.name, assignments);
      for (const r of refusals) out.error(`netfleet rollout: refused (plan ${file}): ${r}`);
      if (refusals.length) return ROLLOUT_EXIT.invalid;
      const planned = new Set(plan.hosts.map((h) => h.host));
      assignments = assignments.filter((a) => planned.has(a.host));
      if (!out.json) for (const line of planSummaryLines(plan, o.plan!)) out.line(line);
    }
    const byHost = new Map(plan?.hosts.map((h) => [h.host, h]));
    const targets: RolloutTarget[] = assignments.map((a) => {
      const p = byHost.get(a.host);
      const labels = inventory.hosts.find((h) => h.name === a.host)?.labels ?? {};
      return { host: a.host, role: a.role, assignment: a, labels, ...(p ? { plan: { basedOn: p.basedOn, observed: p.observed } } : {}) };
    });
    const rollout = new Rollout(
      cp,
      targets,
      {
        check: o.check,
        resume: o.resume,
        ...(o.abandon ? { abandon: true } : {}),
        ...(o.batch ? { batch: o.batch } : {}),
        ...(o.maxFail ? { maxFail: o.maxFail } : {}),
        ...(o.maxPer ? { maxPer: o.maxPer } : {}),
        ...(o.parallel ? { parallel: o.parallel } : {}),
        ...(o.applyTimeoutMs ? { applyTimeoutMs: o.applyTimeoutMs } : {}),
        ...(o.confirmWindowMs ? { confirmWindowMs: o.confirmWindowMs } : {}),
        ...(o.lockStaleMs ? { lockStaleMs: o.lockStaleMs } : {}),
        ...(o.out ? { requireObserved: true } : {}),
        ...(terminal && !o.check
          ? {
              confirm: async (summary) => {
                render.close();
                terminal.output.write(`${plan ? `plan ${o.plan}` : "rollout"}: ${rolloutSummaryLine(summary)}\n`);
                return askYesNo(plan ? "Apply this plan?" : "Roll out?", terminal);
              },
            }
          : {}),
      },
      render.onEvent,
    );
    const { result, checked } = await rollout.run();
    if (o.out) {
      if (result !== "success" || !checked?.length) {
        const passed = new Set(checked?.map((c) => c.host));
        const missing = targets.map((t) => t.host).filter((h) => !passed.has(h));
        out.error(`netfleet rollout: no plan written to ${escapeText(o.out)}: the check did not pass on every host (failed or not checked: ${missing.join(" ") || "none"})`);
      } else {
        const written = signPlan(makePlan(inventory.site.name, checked, o.limit), cp.options.signing);
        await writePlanFile(o.out, written);
        if (out.json) out.line(JSON.stringify({ event: "plan", file: o.out, hosts: written.hosts.length }));
        else out.line(`plan written to ${escapeText(o.out)}: ${written.hosts.length} hosts; apply it with netfleet rollout ${shellWord(o.siteDir ?? "SITE")} --plan ${shellWord(o.out)}`);
      }
    }
    return ROLLOUT_EXIT[result];
  } catch (err) {
    if (err instanceof PlanStaleError) {
      for (const r of err.refusals) out.error(`netfleet rollout: refused (plan ${escapeText(o.plan ?? "")}): ${r}`);
      out.error("netfleet rollout: nothing was published");
      return ROLLOUT_EXIT.invalid;
    }
    if (err instanceof RolloutCancelledError) {
      out.error(`netfleet rollout: ${err.message}`);
      return ROLLOUT_EXIT.failed;
    }
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

/** `netfleet rollout SITE --agent-bundle FILE` options (see AgentRolloutOptions for their meaning). */
export interface AgentRolloutCommandOptions {
  stateDir: string;
  servers?: string[];
  /** The bundle file (built by `buildAgentBundle`, e.g. a release's agent.mjs). */
  bundle: string;
  /** The version it is; default: what `node FILE --version` prints. */
  version?: string;
  batch?: Amount;
  maxFail?: Amount;
  parallel?: number;
  limit?: string[];
  hostTimeoutMs?: number;
  /** Seconds the new version has on each host to come up and report. */
  trialS?: number;
  tty: boolean;
  /** Ask on this terminal before starting (a rollout from a terminal without --yes); undefined: do not ask. */
  terminal?: Terminal;
}

/**
 * The version a bundle says it is: `node FILE --version` (argv, no shell,
 * 20 s), its first line, which must start with a digit.
 * @throws AgentBundleError when it exits non-zero or prints no version.
 */
async function bundleVersion(file: string): Promise<string> {
  const { execa } = await import("execa");
  const r = await execa(process.execPath, [file, "--version"], { timeout: 20_000, reject: false, stdin: "ignore" });
  const v = r.stdout.trim().split("\n")[0]?.trim() ?? "";
  // A version starts with a digit (0.1.0, 1.2.3-rc1): anything else printed is not an agent's --version.
  if (r.exitCode !== 0 || !/^[0-9][0-9A-Za-z.+-]{0,63}$/.test(v)) throw new AgentBundleError(`${file}: not an agent bundle (node ${file} --version: exit ${r.exitCode ?? r.signal}${v ? `, "${v.slice(0, 80)}"` : ""}); give --agent-version`);
  return v;
}

/** A bundle file that cannot be used: one line naming the file. */
export class AgentBundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentBundleError";
  }
}

/**
 * `netfleet rollout SITE --agent-bundle FILE`: reads the bundle (a regular
 * file, at most 64 MiB), finds its version, picks the inventory's approved
 * hosts (--limit), and runs runAgentRollout over the controller's NATS,
 * rendering its events. Returns a ROLLOUT_EXIT code: `invalid` for an
 * unusable bundle or --limit, `locked` when a rollout runs.
 */
export async function agentRolloutCommand(inventory: Inventory, o: AgentRolloutCommandOptions, out: CommandOutput): Promise<number> {
  const { readFile, stat } = await import("node:fs/promises");
  const { MAX_BUNDLE_BYTES } = await import("@netfleet/shared");
  let code: Buffer;
  let version: string;
  try {
    const st = await stat(o.bundle).catch((err: NodeJS.ErrnoException) => {
      throw new AgentBundleError(`${o.bundle}: cannot read (${err.code ?? err.message})`);
    });
    if (!st.isFile()) throw new AgentBundleError(`${o.bundle}: not a regular file`);
    if (st.size === 0 || st.size > MAX_BUNDLE_BYTES) throw new AgentBundleError(`${o.bundle}: ${st.size} bytes; a bundle is 1 byte to ${MAX_BUNDLE_BYTES} bytes`);
    code = await readFile(o.bundle);
    version = o.version ?? (await bundleVersion(o.bundle));
  } catch (err) {
    if (!(err instanceof AgentBundleError)) throw err;
    out.error(`netfleet rollout: --agent-bundle ${err.message}`);
    return ROLLOUT_EXIT.invalid;
  }
  let names = new Set(inventory.hosts.map((h) => h.name));
  if (o.limit?.length) {
    const hosts = limited(inventory, o.limit, out);
    if (!hosts) return ROLLOUT_EXIT.invalid;
    names = hosts;
  }
  if (o.terminal && !(await askYesNo(`Roll agent ${version} out to the approved hosts among ${names.size} (${[...names].slice(0, 6).join(" ")}${names.size > 6 ? " ..." : ""})?`, o.terminal))) {
    out.error("netfleet rollout: cancelled: nothing was published");
    return ROLLOUT_EXIT.failed;
  }
  const render = out.json ? jsonRenderer(out) : humanRenderer(out, o.tty);
  const { cp } = await connectController({ stateDir: o.stateDir, inventory, ...(o.servers ? { servers: o.servers } : {}) });
  try {
    const approved = new Set((await cp.registry.list()).filter((r) => r.state === "approved").map((r) => r.host));
    const hosts = inventory.hosts.filter((h) => names.has(h.name) && approved.has(h.name)).map((h) => ({ host: h.name, role: h.role }));
    const { AgentUpgradeStore } = await import("../store/objects.ts");
    const { runAgentRollout } = await import("../rollout/agent.ts");
    const upgrades = await AgentUpgradeStore.open(cp.nc, inventory.site.name, { replicas: cp.options.replicas ?? 1 });
    const { result } = await runAgentRollout(
      { site: inventory.site.name, upgrades, lock: cp.lock, signing: cp.options.signing },
      hosts,
      { code, version },
      {
        ...(o.batch ? { batch: o.batch } : {}),
        ...(o.maxFail ? { maxFail: o.maxFail } : {}),
        ...(o.parallel ? { parallel: o.parallel } : {}),
        ...(o.hostTimeoutMs ? { hostTimeoutMs: o.hostTimeoutMs } : {}),
        ...(o.trialS ? { trialS: o.trialS } : {}),
      },
      render.onEvent,
    );
    return ROLLOUT_EXIT[result];
  } catch (err) {
    if (err instanceof LockHeldError) {
      out.error(`netfleet rollout: refused: another rollout of ${inventory.site.name} is running (${err.message})`);
      return ROLLOUT_EXIT.locked;
    }
    throw err;
  } finally {
    render.close();
    await cp.close();
  }
}
