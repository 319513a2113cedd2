import type { EffectivePolicyFn } from "./policy.ts";

/**
 * The profiles feature's effective policy with provenance, adapted to the
 * dashboard's shape (per network: key → value and source). Undefined
 * until that function is wired in here: the page then shows the loaded
 * model's values with their sources (policy.ts vmPolicy).
 */
export const effectivePolicy: EffectivePolicyFn | undefined = undefined;
