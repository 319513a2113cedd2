/**
 * Set by `buildAgentBundle({ version })` (controller bootstrap/bundle.ts,
 * esbuild `define`) when a bundle is built as another version; absent
 * (typeof "undefined") when the agent runs from its sources.
 */
declare const __NETFLEET_AGENT_VERSION__: string | undefined;

/**
 * The agent's version: `--version`, and what it reports in its enrollment
 * facts, heartbeats and its `run.<host>` upgrade record. Kept equal to
 * package.json's "version"; a bundle may be built as another (see above).
 */
export const AGENT_VERSION: string = typeof __NETFLEET_AGENT_VERSION__ === "string" ? __NETFLEET_AGENT_VERSION__ : "0.1.0";
