// Plain JavaScript, not TypeScript: this runs before we know that this Node can strip types.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

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
