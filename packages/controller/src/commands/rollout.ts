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
    const { hosts, unmatched } = limitHosts(inventory, o.limit);
    if (unmatched.length) {
      out.error(`netfleet rollout: --limit ${unmatched.join(",")} matches no host, group or role of site ${inventory.site.name}`);
      return ROLLOUT_EXIT.invalid;
    }
    names = hosts;
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
