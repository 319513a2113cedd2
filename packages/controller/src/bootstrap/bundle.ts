import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { build } from "esbuild";

/** The agent bundle's entry: the agent package's `./bundle-entry` export, resolved to its file. */
const AGENT_ENTRY = createRequire(import.meta.url).resolve("@netfleet/agent/bundle-entry");

/** The bundle's code and its SHA-256 (hex). */
export interface AgentBundle {
  code: Buffer;
  sha256: string;
}

/** How to build a bundle. */
export interface AgentBundleOptions {
  /**
   * The version the bundle says it is (`--version`, heartbeats, its upgrade
   * report): esbuild `define` of `__NETFLEET_AGENT_VERSION__` (agent
   * version.ts). Default: the agent's own AGENT_VERSION. Letters, digits, `. + -`.
   */
  version?: string;
}

/**
 * The agent and everything it imports as one ESM file for Node >= 22. Built
 * in memory on every run (about a second); esbuild's output is
 * deterministic, so the checksum changes only when the code (or `version`)
 * does. CommonJS dependencies get a `require` from createRequire and the
 * bundle's `__filename`.
 * @throws Error on a `version` that is not letters, digits and `. + -` (1-64), or when esbuild fails.
 */
export async function buildAgentBundle(options: AgentBundleOptions = {}): Promise<AgentBundle> {
  if (options.version !== undefined && !/^[0-9A-Za-z.+-]{1,64}$/.test(options.version)) {
    throw new Error(`agent bundle version ${JSON.stringify(options.version)}: want 1-64 letters, digits and . + -`);
  }
  const result = await build({
    entryPoints: [AGENT_ENTRY],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node22",
    write: false,
    legalComments: "none",
    logLevel: "silent",
    ...(options.version !== undefined ? { define: { __NETFLEET_AGENT_VERSION__: JSON.stringify(options.version) } } : {}),
    // CommonJS dependencies expect require and __filename (write-file-atomic names its temp files after __filename).
    banner: {
      js: "import { createRequire as __netfleetRequire } from 'node:module';\nimport { fileURLToPath as __netfleetPath } from 'node:url';\nconst require = __netfleetRequire(import.meta.url);\nconst __filename = __netfleetPath(import.meta.url);",
    },
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error("esbuild produced no output for the agent bundle");
  const code = Buffer.from(file.contents);
  return { code, sha256: createHash("sha256").update(code).digest("hex") };
}
