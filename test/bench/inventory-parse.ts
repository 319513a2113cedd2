/**
 * sh scripts/node.sh test/bench/inventory-parse.ts [--quick] [--impl REPO] [--runs N]
 *
 * What loading an inventory costs as its mappings grow: the reference
 * inventory, and the reference inventory plus one file holding a mapping of
 * 1,000 / 5,000 / 20,000 keys in three forms:
 * - labels: a group's `labels` mapping (valid: the site loads);
 * - unknown: that many unknown top-level keys (one problem each, each
 *   located: the path of the schema problems);
 * - duplicates: every key twice in one mapping (half the keys are problems).
 * Each case runs in its own process (so its peak RSS is its own):
 * - firstMs: the first loadInventory (cold: what `netfleet validate` pays);
 * - firstCpuMs: its CPU time (user + system): close to firstMs on an idle
 *   machine, and still meaningful when other jobs share the cores;
 * - medianMs: the median of the next N runs (warm);
 * - peakRssMb: the process's peak resident set (getrusage maxrss), MB.
 * --impl REPO loads with another checkout's packages/shared (e.g. an earlier
 * commit extracted with `git archive`, its node_modules linked to this
 * repository's) to measure before and after a change.
 * --quick: 1,000 and 5,000 keys only; --sizes 20000,40000: these instead.
 * A benchmark, not a test: it prints
 * figures and fails only when a case could not be measured.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";

export interface InventoryParseRow {
  /** `reference`, `labels`, `unknown` or `duplicates`. */
  form: string;
  /** Keys in the big mapping (0 for the reference inventory alone). */
  keys: number;
  /** Problems reported (0 when the site loaded). */
  problems: number;
  firstMs: number;
  firstCpuMs: number;
  medianMs: number;
  peakRssMb: number;
  error?: string;
}

const repoRoot = resolve(import.meta.dirname, "..", "..");
const FORMS = ["labels", "unknown", "duplicates"] as const;

/** The text of the extra file: one mapping of `keys` keys in the given form. */
function bigFile(form: (typeof FORMS)[number], keys: number): string {
  const lines: string[] = [];
  if (form === "labels") {
    lines.push("groups:", "  bench-labels:", "    labels:");
    for (let i = 0; i < keys; i++) lines.push(`      key-${i}: value-${i}`);
  } else if (form === "unknown") {
    for (let i = 0; i < keys; i++) lines.push(`unknown_${i}: ${i}`);
  } else {
    lines.push("groups:", "  bench-duplicates:", "    labels:");
    for (let i = 0; i < keys; i++) lines.push(`      key-${i % Math.max(1, keys / 2)}: value-${i}`);
  }
  return lines.join("\n") + "\n";
}

/** One case in this process: load `dir` 1 + runs times with `impl`'s loadInventory. */
async function measureHere(impl: string, dir: string, runs: number): Promise<Omit<InventoryParseRow, "form" | "keys">> {
  const shared = (await import(pathToFileURL(join(impl, "packages/shared/src/index.ts")).href)) as typeof import("@netfleet/shared");
  const once = (): { ms: number; cpuMs: number; problems: number } => {
    const cpu = process.cpuUsage();
    const t = performance.now();
    let problems = 0;
    try {
      shared.loadInventory(dir, { cwd: dir });
    } catch (err) {
      if (!(err instanceof shared.InventoryError)) throw err;
      problems = err.problems.length;
    }
    const ms = performance.now() - t;
    const used = process.cpuUsage(cpu);
    return { ms, cpuMs: (used.user + used.system) / 1000, problems };
  };
  const first = once();
  const warm = Array.from({ length: runs }, () => once().ms).sort((a, b) => a - b);
  return {
    problems: first.problems,
    firstMs: Math.round(first.ms),
    firstCpuMs: Math.round(first.cpuMs),
    medianMs: Math.round(warm[Math.floor(warm.length / 2)] ?? first.ms),
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/** One case in a child process of its own (bounded: killed after `timeoutMs`). */
function measureChild(impl: string, form: string, keys: number, runs: number, timeoutMs: number): InventoryParseRow {
  const scratch = mkdtempSync(join(tmpdir(), "nf-bench-parse-"));
  try {
    const dir = join(scratch, "site");
    cpSync(join(repoRoot, "inventories/reference"), dir, { recursive: true });
    if (form !== "reference") writeFileSync(join(dir, "zz-big.yaml"), bigFile(form as (typeof FORMS)[number], keys));
    const r = spawnSync(process.execPath, [import.meta.filename, "--child", dir, "--impl", impl, "--runs", String(runs)], { encoding: "utf8", timeout: timeoutMs, maxBuffer: 16 * 2 ** 20 });
    const line = r.stdout.trim().split("\n").pop() ?? "";
    if (r.status !== 0 || !line.startsWith("{")) {
      const why = r.signal ? `killed after ${timeoutMs} ms` : (r.stderr.trim().split("\n").find((l) => /Error/.test(l)) ?? `exit ${r.status}`);
      return { form, keys, problems: 0, firstMs: NaN, firstCpuMs: NaN, medianMs: NaN, peakRssMb: NaN, error: why };
    }
    return { form, keys, ...(JSON.parse(line) as Omit<InventoryParseRow, "form" | "keys">) };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Every case, each in its own process: the reference inventory, then each
 * form at each size. `log` gets one line per case as it finishes.
 */
export function inventoryParseBench(options: { quick?: boolean; sizes?: number[]; impl?: string; runs?: number; timeoutMs?: number; log?: (line: string) => void } = {}): InventoryParseRow[] {
  const impl = resolve(options.impl ?? repoRoot);
  const runs = options.runs ?? 3;
  const timeoutMs = options.timeoutMs ?? 600_000;
  const sizes = options.sizes ?? (options.quick ? [1000, 5000] : [1000, 5000, 20_000]);
  const cases: [string, number][] = [["reference", 0], ...FORMS.flatMap((f) => sizes.map((n): [string, number] => [f, n]))];
  const rows: InventoryParseRow[] = [];
  for (const [form, keys] of cases) {
    const row = measureChild(impl, form, keys, runs, timeoutMs);
    options.log?.(`inventory parse ${form} ${keys}: ${JSON.stringify(row)}`);
    rows.push(row);
  }
  return rows;
}

/** The rows as a table; with `prev`, each figure beside the earlier run's. */
export function inventoryParseTable(rows: InventoryParseRow[], prev?: InventoryParseRow[]): string[] {
  const fmt = (n: number | undefined) => (typeof n === "number" && Number.isFinite(n) ? String(n) : "-");
  const side = (a: number, b: number | undefined) => `${fmt(a).padStart(8)}${prev ? ` ${`(${fmt(b)})`.padStart(9)}` : ""}`;
  const w = prev ? 18 : 8;
  const lines = [`inventory load (reference inventory plus one mapping of N keys; each case its own process)${prev ? "   figures (previous run)" : ""}`];
  lines.push(`  ${"form".padEnd(10)} ${"keys".padStart(6)} ${"problems".padStart(8)} ${"firstMs".padStart(w)} ${"firstCpuMs".padStart(w)} ${"medianMs".padStart(w)} ${"peakRssMb".padStart(w)}`);
  for (const r of rows) {
    const p = prev?.find((x) => x.form === r.form && x.keys === r.keys);
    lines.push(`  ${r.form.padEnd(10)} ${String(r.keys).padStart(6)} ${String(r.problems).padStart(8)} ${side(r.firstMs, p?.firstMs)} ${side(r.firstCpuMs, p?.firstCpuMs)} ${side(r.medianMs, p?.medianMs)} ${side(r.peakRssMb, p?.peakRssMb)}${r.error ? `  error: ${r.error}` : ""}`);
  }
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      impl: { type: "string" },
      runs: { type: "string", default: "3" },
      child: { type: "string" },
      sizes: { type: "string" },
    },
  });
  const runs = Math.max(1, Math.min(50, Number(values.runs) || 3));
  if (values.child) {
    process.stdout.write(JSON.stringify(await measureHere(resolve(values.impl ?? repoRoot), values.child, runs)) + "\n");
    return;
  }
  const sizes = values.sizes?.split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0 && n <= 1_000_000);
  const rows = inventoryParseBench({ quick: values.quick ?? false, runs, ...(sizes?.length ? { sizes } : {}), ...(values.impl ? { impl: values.impl } : {}), log: (l) => process.stderr.write(`[bench] ${l}\n`) });
  process.stdout.write(inventoryParseTable(rows).join("\n") + "\n");
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

if (import.meta.filename === resolve(process.argv[1] ?? "")) await main();
