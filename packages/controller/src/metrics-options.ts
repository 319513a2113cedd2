import type { Command } from "commander";
import { METRICS_DEFAULT_HOST, parseLogLevel, parseMetricsListen, type LogLevel, type MetricsListen } from "@netfleet/shared";
import { optionValue } from "@netfleet/shared/cli";

/** Where `netfleet serve` serves GET /metrics unless `--metrics` says otherwise: loopback only. */
export const SERVE_METRICS_DEFAULT: MetricsListen = { host: METRICS_DEFAULT_HOST, port: 9470 };

/** `--metrics` and `--log-level` as parsed: `"off"` for no listener. */
export interface ServeObservabilityFlags {
  metrics?: MetricsListen | "off";
  logLevel?: LogLevel;
}

/**
 * Adds `--metrics ADDRESS:PORT|PORT|off` and `--log-level LEVEL` to
 * `netfleet serve`; values are checked while parsing (a bad one is a usage
 * error naming the option).
 */
export function withServeObservabilityOptions(cmd: Command): Command {
  return cmd
    .option(
      "--metrics <address>",
      `where to serve Prometheus metrics (GET /metrics): PORT (on 127.0.0.1), ADDRESS:PORT, or off (default 127.0.0.1:${SERVE_METRICS_DEFAULT.port})`,
      optionValue((text): MetricsListen | "off" => parseMetricsListen(text, "--metrics") ?? "off"),
    )
    .option(
      "--log-level <level>",
      "fatal, error, warn, info, debug, trace or silent (default $NETFLEET_LOG_LEVEL, else info)",
      optionValue((text) => parseLogLevel(text, "--log-level")),
    );
}

/**
 * ServeOptions.metrics and logLevel from those flags: the default listener
 * when `--metrics` is absent, none for `off`; the level only when given
 * (serveCommand then asks NETFLEET_LOG_LEVEL).
 */
export function serveObservability(v: ServeObservabilityFlags): { metrics?: MetricsListen; logLevel?: LogLevel } {
  const metrics = v.metrics === undefined ? SERVE_METRICS_DEFAULT : v.metrics === "off" ? undefined : v.metrics;
  return { ...(metrics ? { metrics } : {}), ...(v.logLevel ? { logLevel: v.logLevel } : {}) };
}
