/** The agent's version: `--version`, and what it reports in its enrollment facts and heartbeats. Kept equal to package.json's "version". */
export const AGENT_VERSION = "0.1.0";
