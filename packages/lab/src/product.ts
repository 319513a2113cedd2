/**
 * Where the lab finds the product it drives: the `netfleet` and
 * `netfleet-agent` commands, resolved through their packages
 * (`@netfleet/controller`, `@netfleet/agent`) and the `bin` of each
 * package.json, never by a path into the repository.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { LabOptions } from "./types.ts";

/** The product's commands, by package and bin name. */
const COMMANDS = {
  agent: { pkg: "@netfleet/agent", bin: "netfleet-agent" },
  controller: { pkg: "@netfleet/controller", bin: "netfleet" },
} as const;

/**
 * Absolute path of the product command `which` (its bin script, a Node
 * launcher): resolved from `o.repoRoot` (another checkout, e.g. an older
 * agent) when given, else from this package's own dependencies. Throws when
 * the package or its bin cannot be found.
 */
export function productBin(o: Pick<LabOptions, "repoRoot">, which: keyof typeof COMMANDS): string {
  const { pkg, bin } = COMMANDS[which];
  const require = createRequire(o.repoRoot ? join(o.repoRoot, "package.json") : import.meta.url);
  let dir = dirname(require.resolve(pkg));
  for (;;) {
    const manifest = readManifest(join(dir, "package.json"));
    if (manifest?.name === pkg) {
      const rel = manifest.bin?.[bin];
      if (!rel) throw new Error(`${pkg} declares no bin ${bin}`);
      return join(dir, rel);
    }
    if (dirname(dir) === dir) throw new Error(`no package.json of ${pkg} above ${require.resolve(pkg)}`);
    dir = dirname(dir);
  }
}

function readManifest(file: string): { name?: string; bin?: Record<string, string> } | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as { name?: string; bin?: Record<string, string> };
  } catch {
    return undefined;
  }
}
