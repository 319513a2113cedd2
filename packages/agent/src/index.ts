export * from "./exec/runner.ts";
export { RecordingRunner, type ScriptedReply } from "./exec/recording-runner.ts";
export { Toolbox, type ToolPaths } from "./tools.ts";
export { reconcile, summarize, type ReconcileOptions } from "./engine.ts";
export { EmptyHostRunner, emptyHost } from "./empty-host.ts";
export { handlers } from "./resources/index.ts";
export type { ResourceResult, ResourcePlan, ResourceHandler } from "./resources/types.ts";
export { AgentDaemon, type DaemonOptions } from "./daemon.ts";
export * from "./control/index.ts";
