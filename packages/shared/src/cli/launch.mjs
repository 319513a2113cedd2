// Plain JavaScript, not TypeScript: this runs before we know that this Node can strip types.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { enableCompileCache } from "node:module";
import { fileURLToPath } from "node:url";

/**
 * Node flags the controller's CLI is started with where we start it (the packaged `/usr/bin/netfleet`
 * wrapper, packaging/deb/stage.ts; the fleet benchmark's controller process, test/bench/rollout.ts).
 * Both trade a little CPU for a lower memory ceiling; measured at 10,000 hosts (test/bench/rollout.ts):
 * - `--max-semi-space-size=32` (MB, V8's young generation semi-space; Node 24 grows it to 64 MB):
 *   fewer short-lived objects promoted; peak RSS 338-376 MB (median 351) in 7 runs without it,
 *   314-326 MB in 4 with it.
 * - `--heap-growing-percent=30` (V8: the old generation may grow to 1.3 times what a full GC left live
 *   before the next one starts, instead of V8's dynamic factor of up to 4): at the end of a rollout only
 *   52 MB of the heap is live, yet the old generation had grown to 120-183 MB of garbage awaiting
 *   collection; with it, 61 MB, and peak RSS 238-244 MB in 3 runs, the controller's CPU per host
 *   0.29-0.36 ms (0.28-0.34 without). A V8 flag, not a Node option: Node refuses to start on one
 *   its V8 does not know, which the packaged unit's test would show (test/systemd/debs.test.ts).
 * They must be on the command line: V8 sizes the young generation at start (v8.setFlagsFromString
 * later does not take effect).
 * @type {readonly string[]}
 */
export const CONTROLLER_NODE_FLAGS = Object.freeze(["--max-semi-space-size=32", "--heap-growing-percent=30"]);

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
