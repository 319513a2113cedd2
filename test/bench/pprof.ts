/**
 * Reads a Go CPU profile (pprof's profile.proto, gzipped: what nats-server's
 * `/debug/pprof/profile` returns; rollout.ts --nats-prof writes one) and
 * prints where the CPU went: each function's own time (the leaf of a
 * sample's stack) and its inclusive time (anywhere on the stack), top N of
 * each; with `--around FUNCTION`, the stacks through that function, three
 * frames either side, by time. nats-server's binary in Debian is stripped,
 * so perf(1) cannot name its functions; its own profiler can.
 *
 *   sh scripts/node.sh test/bench/pprof.ts FILE [--top N] [--around FUNCTION]
 *
 * The format: github.com/google/pprof proto/profile.proto (Profile: 1
 * sample_type, 2 sample, 4 location, 5 function, 6 string_table; Sample: 1
 * location_id, 2 value, both packed; Location: 1 id, 4 line; Line: 1
 * function_id; Function: 1 id, 2 name), protobuf wire types 0 (varint), 1
 * (64-bit), 2 (length-delimited), 5 (32-bit). No dependency: the few
 * messages read here are decoded by hand.
 */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

/** One protobuf field: its number and either a varint value or the [start, end) of its bytes. */
type Field = { n: number; varint?: bigint; bytes?: [number, number] };

/**
 * The fields of the message in `b[start, end)`, in order.
 * @throws Error on a wire type this reader does not know (3, 4: groups) or a truncated message.
 */
function fields(b: Uint8Array, start = 0, end = b.length): Field[] {
  const out: Field[] = [];
  let i = start;
  const varint = (): bigint => {
    let r = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= end) throw new Error(`truncated varint at byte ${i}`);
      const x = b[i++]!;
      r |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) return r;
    }
  };
  while (i < end) {
    const key = Number(varint());
    const n = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ n, varint: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > end) throw new Error(`field ${n}: ${len} bytes past the end of its message`);
      out.push({ n, bytes: [i, i + len] });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`field ${n}: wire type ${wire} not read here`);
  }
  return out;
}

/** A repeated integer field's values: packed (one length-delimited field) or not (one varint each). */
function integers(b: Uint8Array, f: Field): bigint[] {
  if (f.varint !== undefined) return [f.varint];
  return packed(b, f.bytes!);
}

/** The varints packed in `b[start, end)`. */
function packed(b: Uint8Array, [start, end]: [number, number]): bigint[] {
  const out: bigint[] = [];
  let i = start;
  while (i < end) {
    let r = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const x = b[i++]!;
      r |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) break;
    }
    out.push(r);
  }
  return out;
}

/** A CPU profile as stacks: each sample's function names, leaf first, and its CPU time (ns). */
export interface Stacks {
  samples: { stack: string[]; ns: number }[];
  totalNs: number;
}

/**
 * Decodes a gzipped (or plain) profile.proto into stacks of function names, with the value of the sample type
 * named `cpu` (nanoseconds), or the last sample type when none is.
 * @throws Error when the bytes are not a profile this reader can decode.
 */
export function readProfile(data: Uint8Array): Stacks {
  const b = data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data;
  const strings: string[] = [];
  const types: { type: number }[] = [];
  const rawSamples: { locs: bigint[]; values: bigint[] }[] = [];
  const locations = new Map<bigint, bigint[]>();
  const functions = new Map<bigint, number>();
  for (const f of fields(b)) {
    if (f.n === 6 && f.bytes) strings.push(Buffer.from(b.subarray(...f.bytes)).toString("utf8"));
    else if (f.n === 1 && f.bytes) types.push({ type: Number(fields(b, ...f.bytes).find((g) => g.n === 1)?.varint ?? 0n) });
    else if (f.n === 2 && f.bytes) {
      const s = { locs: [] as bigint[], values: [] as bigint[] };
      for (const g of fields(b, ...f.bytes)) {
        if (g.n === 1) s.locs.push(...integers(b, g));
        if (g.n === 2) s.values.push(...integers(b, g));
      }
      rawSamples.push(s);
    } else if (f.n === 4 && f.bytes) {
      let id = 0n;
      const fns: bigint[] = [];
      for (const g of fields(b, ...f.bytes)) {
        if (g.n === 1) id = g.varint ?? 0n;
        if (g.n === 4 && g.bytes) fns.push(fields(b, ...g.bytes).find((h) => h.n === 1)?.varint ?? 0n);
      }
      locations.set(id, fns);
    } else if (f.n === 5 && f.bytes) {
      const fn = fields(b, ...f.bytes);
      functions.set(fn.find((g) => g.n === 1)?.varint ?? 0n, Number(fn.find((g) => g.n === 2)?.varint ?? 0n));
    }
  }
  let vi = types.findIndex((t) => strings[t.type] === "cpu");
  if (vi < 0) vi = types.length - 1;
  if (vi < 0) throw new Error("no sample type: not a pprof profile");
  const samples = rawSamples.map((s) => ({
    stack: s.locs.flatMap((id) => (locations.get(id) ?? []).map((fn) => strings[functions.get(fn) ?? 0] ?? "?")),
    ns: Number(s.values[vi] ?? 0n),
  }));
  return { samples, totalNs: samples.reduce((sum, s) => sum + s.ns, 0) };
}

/** Own and inclusive time by function name, most first (ns). */
export function byFunction(p: Stacks): { self: [string, number][]; inclusive: [string, number][] } {
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const s of p.samples) {
    if (s.stack[0]) self.set(s.stack[0], (self.get(s.stack[0]) ?? 0) + s.ns);
    for (const name of new Set(s.stack)) inclusive.set(name, (inclusive.get(name) ?? 0) + s.ns);
  }
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { self: sorted(self), inclusive: sorted(inclusive) };
}

if (import.meta.main) {
  const file = process.argv[2];
  const opt = (name: string) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
  const top = Number(opt("--top") ?? 40);
  const around = opt("--around");
  if (!file || !Number.isInteger(top) || top < 1) {
    process.stderr.write("usage: pprof.ts FILE [--top N] [--around FUNCTION]\n");
    process.exit(2);
  }
  let p: Stacks;
  try {
    p = readProfile(readFileSync(file));
  } catch (err) {
    process.stderr.write(`pprof.ts: ${file}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const short = (name: string) => name.replace("github.com/nats-io/nats-server/server.", "");
  const line = (name: string, ns: number) => `${(ns / 1e6).toFixed(0).padStart(7)} ms ${((100 * ns) / (p.totalNs || 1)).toFixed(1).padStart(5)}%  ${short(name)}`;
  const { self, inclusive } = byFunction(p);
  process.stdout.write(`${file}: ${p.samples.length} stacks, ${(p.totalNs / 1e6).toFixed(0)} ms of CPU\n`);
  process.stdout.write(`own time (top ${top})\n${self.slice(0, top).map(([n, v]) => line(n, v)).join("\n")}\n`);
  process.stdout.write(`inclusive time (top ${top})\n${inclusive.slice(0, top).map(([n, v]) => line(n, v)).join("\n")}\n`);
  if (around) {
    const stacks = new Map<string, number>();
    for (const s of p.samples) {
      const i = s.stack.indexOf(around);
      if (i < 0) continue;
      const key = s.stack.slice(Math.max(0, i - 3), i + 4).map(short).join(" < ");
      stacks.set(key, (stacks.get(key) ?? 0) + s.ns);
    }
    process.stdout.write(`stacks through ${short(around)}\n${[...stacks].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => line(k, v)).join("\n")}\n`);
  }
}
