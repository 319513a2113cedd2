/**
 * Hostile variants of a valid NATS message, generated with fast-check from a
 * fixed seed: what a careless or hostile client sends in place of the real
 * thing. Each variant names its mutation, so the suite counts per kind.
 */
import fc from "fast-check";

export type Mutation =
  | "truncated"
  | "wrong-type"
  | "unknown-field"
  | "deep-nesting"
  | "nul-escape"
  | "invalid-utf8"
  | "random-json"
  | "random-bytes"
  | "big-number"
  | "near-max";

export interface Variant {
  mutation: Mutation;
  data: Uint8Array;
}

/** A variant not yet built (a near-max one is a megabyte: built only when it is kept). */
interface Draft {
  mutation: Mutation;
  build: () => Uint8Array;
}

type Path = (string | number)[];

/** Every path into a JSON value (containers and leaves), at most `limit`, depth-first, up to depth 6. */
function pathsOf(value: unknown, limit = 400): { all: Path[]; objects: Path[]; strings: Path[]; numbers: Path[] } {
  const out = { all: [] as Path[], objects: [[]] as Path[], strings: [] as Path[], numbers: [] as Path[] };
  const walk = (v: unknown, path: Path) => {
    if (out.all.length >= limit || path.length > 6) return;
    if (path.length > 0) out.all.push(path);
    if (typeof v === "string") out.strings.push(path);
    else if (typeof v === "number") out.numbers.push(path);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else if (v && typeof v === "object") {
      if (path.length > 0) out.objects.push(path);
      for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
    }
  };
  walk(value, []);
  return out;
}

/** A deep copy of `base` with the value at `path` replaced (or, with `add`, a key added to the object there). */
function setAt(base: unknown, path: Path, value: unknown): unknown {
  const copy = structuredClone(base) as Record<string | number, unknown>;
  if (path.length === 0) return value;
  let at = copy;
  for (const p of path.slice(0, -1)) at = at[p] as Record<string | number, unknown>;
  at[path.at(-1)!] = value;
  return copy;
}

const enc = new TextEncoder();

/** Strings a terminal, a log line, a shell or a subject parser would trip on. */
export const NASTY = fc.constantFrom(
  "\u0000",
  "a\u0000b",
  "\u001b[2J\u001b[H",
  "\u001b]0;owned\u0007",
  "\r\nnetfleet: error: forged line",
  "\u202egnp.exe",
  "\ud800",
  "\ufeff",
  "../../../etc/shadow",
  "$(reboot)",
  "`id`",
  "nf.lab.>",
  "*",
  "%00",
  "\\u0000",
);

const WRONG = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 12 }),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.integer(), { maxKeys: 2 }),
  fc.constantFrom(-1, 2 ** 53 + 2, 1e308, -0, 0.5),
);

/**
 * Hostile variants of `base` (a valid message as a JSON value). `maxBytes`:
 * the server's max_payload; near-max variants fill a string field up to 4 KiB
 * below it. Some variants may happen to be valid: the caller filters with
 * the product's own decoder.
 */
export function hostile(base: unknown, maxBytes: number): fc.Arbitrary<Variant & Partial<Draft>> {
  const text = JSON.stringify(base);
  const p = pathsOf(base);
  const json = (mutation: Mutation) => (v: unknown): Variant => ({ mutation, data: enc.encode(JSON.stringify(v)) });
  const arbs: fc.Arbitrary<Variant & Partial<Draft>>[] = [
    fc.integer({ min: 0, max: text.length - 1 }).map((k) => ({ mutation: "truncated" as const, data: enc.encode(text.slice(0, k)) })),
    fc.tuple(fc.constantFrom(...p.all), WRONG).map(([path, v]) => json("wrong-type")(setAt(base, path, v))),
    fc
      .tuple(fc.constantFrom(...p.objects), fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), NASTY, fc.constantFrom("__proto__", "constructor", "toString")), fc.jsonValue({ maxDepth: 2 }))
      .map(([path, key, v]) => {
        // defineProperty, so "__proto__" becomes a real key of the JSON text (as JSON.parse makes it an own property).
        const copy = structuredClone(base);
        Object.defineProperty(path.length === 0 ? copy : pathGet(copy, path), key, { value: v ?? null, enumerable: true, configurable: true, writable: true });
        return json("unknown-field")(copy);
      }),
    fc.tuple(fc.constantFrom(...p.all), fc.integer({ min: 200, max: 30_000 }), fc.boolean()).map(([path, depth, arrays]) => {
      const [open, close] = arrays ? ["[", "]"] : ['{"a":', "}"];
      const nested = `${open.repeat(depth)}1${close.repeat(depth)}`;
      const out = JSON.stringify(setAt(base, path, "\u0001HOLE\u0001")).replace(JSON.stringify("\u0001HOLE\u0001"), nested);
      return { mutation: "deep-nesting" as const, data: enc.encode(out) };
    }),
    ...(p.strings.length > 0
      ? [fc.tuple(fc.constantFrom(...p.strings), NASTY, fc.string({ maxLength: 8 })).map(([path, bad, s]) => json("nul-escape")(setAt(base, path, `${s}${bad}${String(pathGet(base, path))}`)))]
      : []),
    fc.tuple(fc.integer({ min: 0, max: text.length - 1 }), fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82])).map(([at, bytes]) => {
      const raw = enc.encode(text);
      const out = new Uint8Array(raw.length + bytes.length);
      out.set(raw.subarray(0, at));
      out.set(bytes, at);
      out.set(raw.subarray(at), at + bytes.length);
      return { mutation: "invalid-utf8" as const, data: out };
    }),
    fc.jsonValue({ maxDepth: 3 }).map(json("random-json")),
    fc.uint8Array({ minLength: 0, maxLength: 256 }).map((data) => ({ mutation: "random-bytes" as const, data })),
    ...(p.numbers.length > 0
      ? [fc.tuple(fc.constantFrom(...p.numbers), fc.constantFrom(-1, -0.5, 1.5, 2 ** 53 + 2, 1e308, -1e308, 1e-300)).map(([path, n]) => json("big-number")(setAt(base, path, n)))]
      : []),
    ...(p.strings.length > 0
      ? [
          fc.constantFrom(...p.strings).map((path) => {
            const filler = Math.max(0, maxBytes - 4096 - text.length);
            return { mutation: "near-max" as const, data: new Uint8Array(0), build: () => enc.encode(JSON.stringify(setAt(base, path, `${String(pathGet(base, path))}${"A".repeat(filler)}`))) };
          }),
        ]
      : []),
  ];
  return fc.oneof(...arbs);
}

function pathGet(value: unknown, path: Path): unknown {
  let at = value as Record<string | number, unknown>;
  for (const p of path) at = at[p] as Record<string | number, unknown>;
  return at;
}

/**
 * `count` variants of `base` that `accepted` refuses (the product's decoder
 * and checks: a variant it would accept is a legitimate message, not an
 * attack, and is dropped), drawn from `seed`. Near-max variants are kept to
 * at most `maxNear` (default 1: they cost a megabyte each).
 */
export function sampleHostile(base: unknown, options: { seed: number; count: number; maxBytes: number; accepted: (data: Uint8Array) => boolean; maxNear?: number }): Variant[] {
  const out: Variant[] = [];
  let near = 0;
  const pool = fc.sample(hostile(base, options.maxBytes), { seed: options.seed, numRuns: options.count * 3 });
  for (const v of pool) {
    if (out.length >= options.count) break;
    if (v.mutation === "near-max" && near >= (options.maxNear ?? 1)) continue;
    const data = v.build ? v.build() : v.data;
    if (options.accepted(data)) continue;
    if (v.mutation === "near-max") near++;
    out.push({ mutation: v.mutation, data });
  }
  return out;
}

/** Per-mutation counts of a list of variants (the suite's figures). */
export function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}
