/**
 * Reads a V8 sampling heap profile (.heapprofile: DevTools' format, as
 * rollout-agents.ts writes with NF_BENCH_ALLOC_PROF) and prints the bytes
 * sampled per function: own (allocated in it) and inclusive (in it or what
 * it called), each function counted once per stack.
 *
 * sh scripts/node.sh test/bench/heapprof.ts FILE... [--top N]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { callFrame: CallFrame; selfSize: number; id: number; children: ProfileNode[] }
interface HeapProfile { head: ProfileNode; samples?: { size: number; nodeId: number }[] }

// node:util parseArgs, as run.ts: files are positionals, --top N the only option.
const { values, positionals: files } = parseArgs({ allowPositionals: true, options: { top: { type: "string" } } });
const top = Number(values.top ?? 30);
if (files.length === 0 || !(top > 0)) {
  console.error("usage: heapprof.ts FILE... [--top N]");
  process.exit(2);
}
const own = new Map<string, number>();
const inclusive = new Map<string, number>();
let total = 0;
const name = (f: CallFrame) => `${f.functionName || "(anonymous)"} ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}`;
function walk(node: ProfileNode, stack: string[]): number {
  const key = name(node.callFrame);
  const inner = [...stack, key];
  let sum = node.selfSize;
  own.set(key, (own.get(key) ?? 0) + node.selfSize);
  for (const child of node.children) sum += walk(child, inner);
  // Once per stack: a recursive function's bytes are not counted twice.
  if (!stack.includes(key)) inclusive.set(key, (inclusive.get(key) ?? 0) + sum);
  return sum;
}
for (const file of files) {
  let profile: HeapProfile;
  try {
    profile = JSON.parse(readFileSync(file, "utf8")) as HeapProfile;
  } catch (err) {
    console.error(`heapprof.ts: ${file}: ${(err as Error).message}`);
    process.exit(1);
  }
  total += walk(profile.head, []);
}
const mb = (n: number) => (n / 2 ** 20).toFixed(1).padStart(8);
const show = (m: Map<string, number>, label: string) => {
  console.log(`${label} (top ${top})`);
  for (const [k, v] of [...m].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${mb(v)} MB  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
};
console.log(`${files.join(", ")}: ${mb(total).trim()} MB sampled`);
show(own, "own");
show(inclusive, "inclusive");
