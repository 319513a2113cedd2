import { createHash } from "node:crypto";

/**
 * JSON with object keys sorted at every level: the same value always gives
 * the same bytes. What the assignment's content hash and the envelope's
 * signature cover, computed over a document as received (every key it
 * holds, `__proto__` included) as well as over one being built.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    // No prototype: a key "__proto__" from JSON.parse stays a key, not a prototype change.
    const out: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** sha256 of the UTF-8 of `text`, lowercase hex (64 digits). */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
