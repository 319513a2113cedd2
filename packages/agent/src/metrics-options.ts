import type { Command } from "commander";
import { METRICS_DEFAULT_HOST, observabilitySettings as settings, withObservabilityOptions as withOptions, type MetricsListen, type ObservabilityFlags } from "@netfleet/shared";

export type { ObservabilityFlags };

/** Where the fleet agent serves GET /metrics unless `--metrics` (or agent.json's `metrics`) says otherwise: loopback only. */
export const AGENT_METRICS_DEFAULT: MetricsListen = { host: METRICS_DEFAULT_HOST, port: 9471 };

/** `netfleet-agent run`'s `--metrics` (default AGENT_METRICS_DEFAULT) and `--log-level` (shared withObservabilityOptions). */
export function withObservabilityOptions(cmd: Command): Command {
  return withOptions(cmd, AGENT_METRICS_DEFAULT);
}

/** FleetSettings.metrics and logLevel from those flags (shared observabilitySettings). */
export function observabilitySettings(v: ObservabilityFlags): ReturnType<typeof settings> {
  return settings(v, AGENT_METRICS_DEFAULT);
}
