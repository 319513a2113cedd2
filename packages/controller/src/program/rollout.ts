import type { Command } from "commander";
import { optionValue, usageError, withExitCode } from "@netfleet/shared/cli";
import { boundOldGeneration } from "@netfleet/shared/cli/launch";
import type { RolloutCommandOptions } from "../commands/rollout.ts";
import { parseAmount, parseMaxPer, type Amount, type MaxPer } from "../rollout/waves.ts";
import { LIMIT_HELP, checked, jsonOption, natsOption, patternList, seconds, stateDirOption, wholeNumber, type Context } from "./options.ts";

/** Commander's values of `netfleet rollout`, already parsed. */
interface RolloutFlags {
  check?: boolean;
  batch?: Amount;
  maxFail?: Amount;
  maxPer?: MaxPer;
  limit?: string[];
  parallel?: number;
  resume?: boolean;
  abandon?: boolean;
  timeout?: number;
  confirmWindow?: number;
  lockStale?: number;
  stateDir?: string;
  nats?: string;
  json?: boolean;
  agentBundle?: string;
  agentVersion?: string;
  trial?: number;
  out?: string;
  plan?: string;
  yes?: boolean;
}

/** `--batch N|P%`: at least one host per wave. */
function batch(text: string): Amount {
  const amount = parseAmount(text, "--batch");
  if ("count" in amount && amount.count < 1) throw new Error("--batch must be at least 1");
  return amount;
}

/** `netfleet rollout`. */
export function addRolloutCommand(program: Command, ctx: Context): void {
  program
    .command("rollout")
    .summary("Roll the site out to its hosts: a canary, then waves; judged on each agent's verified report.")
    .description(
      "Per-host diff, then backends before VM hosts: a canary, then waves of --batch, --parallel at a time; judged on each agent's " +
        "verified report. A failed canary, or more than --max-fail failed hosts, stops it and reverts the hosts it changed. " +
        "A second rollout of the site while one runs is refused (exit 4).",
    )
    .argument("<site-dir>", "the site folder")
    .option("--check", "the same, but agents only say what they would change")
    .option("--out <file>", "with --check: save the plan (each host's assignment, the desired revision and the observed-state hash it was made against, the changes) to FILE")
    .option("--plan <file>", "apply exactly this plan (from --check --out): refused, naming the host, where the inventory or a host changed since")
    .option("--yes", "do not ask before publishing (needed when not run from a terminal)")
    .option("--batch <N|P%>", "hosts per wave after the canary (default 25%)", optionValue(batch))
    .option("--max-fail <N|P%>", "failed hosts tolerated before it stops and reverts (default 0)", optionValue((t) => parseAmount(t, "--max-fail")))
    .option("--max-per <label=N>", "at most N hosts with the same value of that inventory label in one wave, e.g. rack=1: never two hosts of one rack at once (hosts without the label count as one value)", optionValue((t) => parseMaxPer(t)))
    .option("--limit <patterns>", LIMIT_HELP, patternList)
    .option("--parallel <n>", "hosts of a wave at a time (default the wave)", wholeNumber("--parallel", 1))
    .option("--resume", "continue a rollout whose controller died (waits for its lock to go stale)")
    .option("--abandon", "start anew over a dead rollout instead (its hosts keep what they got)")
    .option("--timeout <s>", "per host, seconds (default 180)", seconds("--timeout"))
    .option("--confirm-window <s>", "how long a host's stored report of success waits for its agent's confirmation (its report on the report subject, or a heartbeat of the revision) before the host fails as never confirmed, seconds (default 40)", seconds("--confirm-window"))
    .option("--lock-stale <s>", "when a dead rollout's lock counts as stale, seconds (default 15)", seconds("--lock-stale"))
    .option("--agent-bundle <file>", "roll out this agent bundle instead of the assignments: each host's agent fetches it from NATS, verifies it and restarts into it")
    .option("--agent-version <v>", "with --agent-bundle: the version the bundle is (default: what node FILE --version prints)")
    .option("--trial <s>", "with --agent-bundle: how long the new version has on a host to come up and report before it is put back, seconds (default 120)", seconds("--trial"))
    .addOption(stateDirOption())
    .addOption(natsOption())
    .addOption(jsonOption("JSON lines: one event per line"))
    .addHelpText("after", "\nFrom a terminal it shows what it will change and asks (y/N) before publishing; --yes does not ask, and is needed when not run from a terminal (check mode and --resume need none).\n" +
        "Plans: rollout SITE --check --out plan.json saves what the check saw; rollout SITE --plan plan.json applies exactly that, and is refused,\n" +
        "naming the host, where the inventory compiles differently or a host's desired state moved since; an agent whose host changed since the plan refuses it and runs nothing.\n" +
        "\nExit: 0 success, 3 partial (some hosts failed within the budget), 1 failed (stopped and reverted) or declined at the question, 4 refused (lock held), 2 invalid (also a bad or stale plan: nothing published), 64 usage.")
    .action(withExitCode(async (dir: string, v: RolloutFlags, cmd: Command) => {
      if (v.check && v.resume) usageError(cmd, "--check and --resume do not go together");
      if (v.resume && v.abandon) usageError(cmd, "--resume and --abandon do not go together");
      if (v.agentBundle && (v.check || v.resume || v.abandon)) usageError(cmd, "--agent-bundle does not go with --check, --resume or --abandon");
      if (v.agentBundle && v.confirmWindow) usageError(cmd, "--confirm-window does not go with --agent-bundle (an agent rollout is judged on the new version's own report, --trial)");
      if (!v.agentBundle && (v.agentVersion || v.trial)) usageError(cmd, "--agent-version and --trial go with --agent-bundle");
      if (v.out !== undefined && !v.check) usageError(cmd, "--out goes with --check (it saves the plan the check makes)");
      if (v.plan !== undefined && (v.check || v.resume || v.agentBundle || v.limit)) usageError(cmd, "--plan does not go with --check, --resume, --agent-bundle or --limit (the plan names its hosts)");
      // Anything that publishes asks first on a terminal; elsewhere (scripts, CI) the operator says yes up front.
      // Check mode changes nothing, and --resume continues a rollout that was already started.
      const publishes = !v.check && !v.resume;
      const interactive = process.stdin.isTTY === true;
      // A rollout holds every host's state for minutes: the old generation collected at 1.3 times what was live (launch.mjs).
      boundOldGeneration();
      const [{ parseServers, stateDirOf }, { ROLLOUT_EXIT, rolloutCommand, agentRolloutCommand }, { loadOrReport }] = await Promise.all([
        import("../commands/connect.ts"),
        import("../commands/rollout.ts"),
        import("../commands/validate.ts"),
      ]);
      const servers = v.nats === undefined ? undefined : checked(cmd, () => parseServers(v.nats!));
      if (publishes && !v.yes && !interactive) usageError(cmd, "not run from a terminal, so there is no one to ask: give --yes to roll out without asking (or --check to only look)");
      const terminal = publishes && !v.yes ? { input: process.stdin, output: process.stderr } : undefined;
      const out = ctx.output(v.json ?? false);
      const opts: RolloutCommandOptions = {
        stateDir: stateDirOf(v.stateDir),
        check: v.check ?? false,
        resume: v.resume ?? false,
        ...(v.abandon ? { abandon: true } : {}),
        tty: !out.json && process.stdout.isTTY === true,
        ...(servers ? { servers } : {}),
        ...(v.batch ? { batch: v.batch } : {}),
        ...(v.maxFail ? { maxFail: v.maxFail } : {}),
        ...(v.maxPer ? { maxPer: v.maxPer } : {}),
        ...(v.parallel ? { parallel: v.parallel } : {}),
        ...(v.limit ? { limit: v.limit } : {}),
        ...(v.timeout ? { applyTimeoutMs: v.timeout } : {}),
        ...(v.confirmWindow ? { confirmWindowMs: v.confirmWindow } : {}),
        ...(v.lockStale ? { lockStaleMs: v.lockStale } : {}),
        ...(v.out !== undefined ? { out: v.out } : {}),
        ...(v.plan !== undefined ? { plan: v.plan } : {}),
        ...(terminal ? { terminal } : {}),
        siteDir: dir,
      };
      const inventory = loadOrReport(dir, out);
      if (!inventory) return ROLLOUT_EXIT.invalid;
      if (v.agentBundle) {
        return agentRolloutCommand(
          inventory,
          {
            stateDir: opts.stateDir,
            bundle: v.agentBundle,
            tty: opts.tty,
            ...(servers ? { servers } : {}),
            ...(v.agentVersion ? { version: v.agentVersion } : {}),
            ...(v.batch ? { batch: v.batch } : {}),
            ...(v.maxFail ? { maxFail: v.maxFail } : {}),
            ...(v.parallel ? { parallel: v.parallel } : {}),
            ...(v.limit ? { limit: v.limit } : {}),
            ...(v.timeout ? { hostTimeoutMs: v.timeout } : {}),
            ...(v.trial ? { trialS: Math.max(5, Math.round(v.trial / 1000)) } : {}),
            ...(terminal ? { terminal } : {}),
          },
          out,
        );
      }
      return rolloutCommand(inventory, opts, out);
    }));
}
