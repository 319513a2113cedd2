#!/usr/bin/env node
// Starts the TypeScript entry point with a Node that strips types (>= 22.18);
// an older system Node hands over to the one scripts/setup.sh installed.
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const entry = join(here, "..", "src", "cli.ts");
const [major, minor] = process.versions.node.split(".").map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  await import(entry);
} else {
  const bundled = join(here, "..", "..", "..", ".tools", "node", "bin", "node");
  if (!existsSync(bundled)) {
    console.error(`netfleet-lab: Node ${process.versions.node} is too old (need >= 22.18); run 'npm run setup'`);
    process.exit(1);
  }
  const child = spawnSync(bundled, [entry, ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(child.status ?? 1);
}
