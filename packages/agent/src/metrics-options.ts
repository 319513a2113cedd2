import type { Command } from "commander";
import { METRICS_DEFAULT_HOST, parseLogLevel, parseMetricsListen, type LogLevel, type MetricsListen } from "@netfleet/shared";
import { optionValue } from "@netfleet/shared/cli";

/** Where the fleet agent serves GET /metrics unless `--metrics` (or agent.json's `metrics`) says otherwise: loopback only. */
export const AGENT_METRICS_DEFAULT: MetricsListen = { host: METRICS_DEFAULT_HOST, port: 9471 };

/** `--metrics` and `--log-level` as parsed: `"off"` for no listener. */
export interface ObservabilityFlags {
  metrics?: MetricsListen | "off";
  logLevel?: LogLevel;
}

/**
 * Adds `--metrics ADDRESS:PORT|PORT|off` and `--log-level LEVEL` to a
 * command (`netfleet-agent run`); values are checked while parsing (a bad
 * one is a usage error naming the option).
 */
export function withObservabilityOptions(cmd: Command): Command {
  return cmd
    .option(
      "--metrics <address>",
      `where to serve Prometheus metrics (GET /metrics): PORT (on 127.0.0.1), ADDRESS:PORT, or off (default 127.0.0.1:${AGENT_METRICS_DEFAULT.port})`,
      optionValue((text): MetricsListen | "off" => parseMetricsListen(text, "--metrics") ?? "off"),
    )
    .option(
      "--log-level <level>",
      "fatal, error, warn, info, debug, trace or silent (default $NETFLEET_LOG_LEVEL, else info)",
      optionValue((text) => parseLogLevel(text, "--log-level")),
    );
}

/**
 * The fleet agent's settings from those flags (FleetSettings.metrics and
 * logLevel): the default listener when `--metrics` is absent, none for
 * `off`; the level only when given (runFleetAgent then asks
 * NETFLEET_LOG_LEVEL).
 */
export function observabilitySettings(v: ObservabilityFlags): { metrics?: MetricsListen; logLevel?: LogLevel } {
  const metrics = v.metrics === undefined ? AGENT_METRICS_DEFAULT : v.metrics === "off" ? undefined : v.metrics;
  return { ...(metrics ? { metrics } : {}), ...(v.logLevel ? { logLevel: v.logLevel } : {}) };
}
