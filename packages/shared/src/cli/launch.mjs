// Plain JavaScript, not TypeScript: this runs before we know that this Node can strip types.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { enableCompileCache } from "node:module";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";

/**
 * Node flags the controller's CLI is started with where we start it (the packaged `/usr/bin/netfleet`
 * wrapper, packaging/deb/stage.ts; the fleet benchmark's controller process, test/bench/rollout.ts):
 * `--max-semi-space-size=32` (MB, V8's young generation semi-space; Node 24 grows it to 64 MB): fewer
 * short-lived objects promoted; at 10,000 hosts (test/bench/rollout.ts) the rollout's peak RSS was
 * 338-376 MB (median 351) in 7 runs without it, 314-326 MB in 4 with it. It must be on the command
 * line: V8 sizes the young generation at start (v8.setFlagsFromString later does not take effect).
 * The long-running commands add LONG_RUNNING_V8_FLAGS for themselves (boundOldGeneration).
 * @type {readonly string[]}
 */
export const CONTROLLER_NODE_FLAGS = Object.freeze(["--max-semi-space-size=32"]);

/**
 * V8 flags the controller's long-running commands (rollout, serve) set for themselves at start
 * (boundOldGeneration), not every command: `--heap-growing-percent=30` (V8: the old generation may grow
 * to 1.3 times what a full GC left live before the next one starts, instead of V8's dynamic factor of up
 * to 4). At the end of a 10,000-host rollout only 52 MB of the heap is live, yet the old generation had
 * grown to 120-183 MB of garbage awaiting collection; with it 61 MB, peak RSS 238-244 MB in 3 runs, the
 * controller's CPU per host 0.29-0.36 ms (0.28-0.34 without). A one-shot listing whose heap only grows
 * pays for it in full GCs: `status` over 10,000 hosts (test/bench/status.ts, 3 runs each) took
 * 1,584/1,816/1,901 ms with it on the command line (CPU 1,820-2,384 ms, peak RSS 290-296 MB) and
 * 1,268/1,365/1,538 ms without it (CPU 1,558-1,901 ms, peak RSS 283-289 MB).
 * @type {readonly string[]}
 */
export const LONG_RUNNING_V8_FLAGS = Object.freeze(["--heap-growing-percent=30"]);

/**
 * Sets LONG_RUNNING_V8_FLAGS in this process (v8.setFlagsFromString). V8 reads
 * heap_growing_percent each time it sets the old generation's next limit (after a full GC;
 * src/heap/heap-controller.cc, MemoryController::GrowingFactor), so it holds from the next full GC on;
 * Node leaves V8's flags writable after start for v8.setFlagsFromString. Called first in the
 * rollout and serve actions, and by the benchmark's controller process, which stands for `rollout`.
 * @returns {void}
 */
export function boundOldGeneration() {
  for (const flag of LONG_RUNNING_V8_FLAGS) setFlagsFromString(flag);
}

/** The Node that scripts/setup.sh installs at the repository's root. */
const BUNDLED_NODE = fileURLToPath(new URL("../../../../.tools/node/bin/node", import.meta.url));

/**
 * Starts a CLI's TypeScript entry (its src/cli.ts) from its bin file: in
 * this process when this Node strips types (>= 22.18), else in the Node that
 * `npm run setup` installed in .tools/node, passing the arguments and
 * exiting with its status; without that Node, prints why and exits 1.
 * @param {string} name the executable's name, e.g. "netfleet", for the error line
 * @param {URL} entry the TypeScript entry, e.g. `new URL("../src/cli.ts", import.meta.url)`
 * @returns {Promise<void>}
 */
export async function launch(name, entry) {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  if (major > 22 || (major === 22 && minor >= 18)) {
    // Before the entry is imported, so that it too (not only what it imports) comes from Node's compile cache:
    // a start whose every module is cached never loads Node's TypeScript stripper (amaro, a WebAssembly build of
    // swc: 85-130 ms of a CLI start here).
    enableCompileCache();
    await import(entry.href);
    return;
  }
  if (!existsSync(BUNDLED_NODE)) {
    console.error(`${name}: Node ${process.versions.node} is too old (need >= 22.18); run 'npm run setup'`);
    process.exit(1);
  }
  const child = spawnSync(BUNDLED_NODE, [fileURLToPath(entry), ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(child.status ?? 1);
}
