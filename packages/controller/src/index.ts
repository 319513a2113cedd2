export { compileSite, compileHost, gatewayMac } from "./planner/compile.ts";
export { planHosts, type HostPlan } from "./commands/plan.ts";
export { main } from "./main.ts";
export * from "./control/index.ts";
