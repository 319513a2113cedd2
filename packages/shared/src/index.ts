export * from "./errors.ts";
export * from "./names.ts";
export * from "./ipv4.ts";
export * from "./canonical.ts";
export * from "./inventory/schema.ts";
export * from "./inventory/model.ts";
export * from "./inventory/source.ts";
export { loadInventory } from "./inventory/load.ts";
export * from "./assignment.ts";
