import type { Command } from "commander";
import { METRICS_DEFAULT_HOST, observabilitySettings, withObservabilityOptions, type MetricsListen, type ObservabilityFlags } from "@netfleet/shared";

/** `--metrics` and `--log-level` of serve as parsed. */
export type ServeObservabilityFlags = ObservabilityFlags;

/** Where `netfleet serve` serves GET /metrics unless `--metrics` says otherwise: loopback only. */
export const SERVE_METRICS_DEFAULT: MetricsListen = { host: METRICS_DEFAULT_HOST, port: 9470 };

/** `netfleet serve`'s `--metrics` (default SERVE_METRICS_DEFAULT) and `--log-level` (shared withObservabilityOptions). */
export function withServeObservabilityOptions(cmd: Command): Command {
  return withObservabilityOptions(cmd, SERVE_METRICS_DEFAULT);
}

/** ServeOptions.metrics and logLevel from those flags (shared observabilitySettings). */
export function serveObservability(v: ServeObservabilityFlags): ReturnType<typeof observabilitySettings> {
  return observabilitySettings(v, SERVE_METRICS_DEFAULT);
}
