// Fills Node's compile cache with the modules of the netfleet and netfleet-agent CLIs, so that the first
// command after `npm run setup` starts as fast as any later one. Node keeps each module's type-stripped
// source and V8 code cache there (module.enableCompileCache(), the directory the CLIs use by default:
// os.tmpdir()/node-compile-cache), keyed by Node's version and each file's content, so a changed file is
// simply compiled again. The same idea as Debian byte-compiling Python modules when they are installed.
//
// What it imports: each CLI's main.ts and every module their code imports lazily (`await import("./x.ts")`
// in packages/{controller,agent}/src, where a command loads its code only when run), with all they import
// in turn. Importing only defines things: the commands themselves are not run. Best effort: a module that
// fails to load is named on stderr and the run still exits 0 (it is only a cache; the CLI compiles it then).
// Plain JavaScript, as launch.mjs, so that this file itself needs no stripping.
import { readdirSync, readFileSync } from "node:fs";
import { enableCompileCache, flushCompileCache } from "node:module";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const ROOT = resolve(import.meta.dirname, "..");
const TREES = ["packages/controller/src", "packages/agent/src"];
const LAZY = /import\("(\.{1,2}\/[^"]+\.ts)"\)/g;

/** Every .ts file under `dir` but tests and fixtures (paths, absolute). */
function sources(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !join(e.parentPath, e.name).includes("__fixtures__"))
    .map((e) => join(e.parentPath, e.name));
}

const status = enableCompileCache();
const targets = new Set(TREES.map((t) => join(ROOT, t, "main.ts")));
for (const tree of TREES) {
  for (const file of sources(join(ROOT, tree))) {
    for (const m of readFileSync(file, "utf8").matchAll(LAZY)) targets.add(resolve(dirname(file), m[1]));
  }
}
const t = performance.now();
let failed = 0;
for (const file of [...targets].sort()) {
  try {
    await import(pathToFileURL(file).href);
  } catch (err) {
    failed++;
    process.stderr.write(`setup: compile cache: ${file}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
flushCompileCache();
process.stderr.write(`setup: compile cache ${status.directory ?? "(off)"}: ${targets.size - failed} entry modules and what they import, ${Math.round(performance.now() - t)} ms\n`);
