import { canonicalJson, resourceId, sha256Hex, type ResourceSpec } from "@netfleet/shared";
import { handlerFor } from "./index.ts";

/**
 * A value as plain JSON data: a Map becomes an object (its keys as
 * strings), a Set a sorted array; anything else as it is. canonicalJson
 * then sorts the keys.
 */
function plain(value: unknown): unknown {
  if (value instanceof Map) return Object.fromEntries([...value.entries()].map(([k, v]) => [String(k), plain(v)]));
  if (value instanceof Set) return [...value].map(plain).sort();
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/**
 * The observed-state hash of a pass: sha256 (lowercase hex, 64 digits) of
 * the canonical JSON (sorted keys) of `[id, observation]` for each
 * resource in order, each observation reduced by its handler's `stable`
 * (no counters, timestamps, lease expiry, pids); a resource whose
 * observation failed counts as `{ error: message }`. The same on an
 * unchanged host, pass after pass, whether check mode or apply; different
 * when anything a plan depends on changed.
 */
export function observedHash(resources: readonly ResourceSpec[], outcomes: readonly PromiseSettledResult<unknown>[]): string {
  const entries = resources.map((spec, i) => {
    const o = outcomes[i]!;
    if (o.status === "rejected") return [resourceId(spec), { error: o.reason instanceof Error ? o.reason.message : String(o.reason) }];
    const handler = handlerFor(spec);
    return [resourceId(spec), plain(handler.stable ? handler.stable(o.value, spec) : o.value)];
  });
  return sha256Hex(canonicalJson(entries));
}

/**
 * The comment of a pass refused because the host is not as it was when
 * the plan was made (engine option `expectObserved`). Callers match
 * "host changed since the plan" (netfleet rollout --plan).
 */
export function hostChangedComment(observed: string, planned: string): string {
  return `host changed since the plan (observed ${observed}, plan made against ${planned}): nothing was run; check again and make a new plan`;
}
