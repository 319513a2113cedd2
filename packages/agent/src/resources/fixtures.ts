import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Toolbox } from "../tools.ts";
import type { HostAccess, PlanContext } from "./types.ts";

/** Output captured from the real tools (see test/fixtures/capture-*.sh). */
export function fixture(path: string): string {
  return readFileSync(join(import.meta.dirname, "__fixtures__", path), "utf8");
}

/** A host with none of the files or processes netfleet reads (run dir, state dir, /etc/passwd, pids). */
export const noFiles: HostAccess = {
  readFile: async () => undefined,
  listDir: async () => undefined,
  processArgv: async () => undefined,
};

/** The owner the fixtures were captured with. */
export const fixtureContext: PlanContext = { owner: "fixture", tools: new Toolbox() };
