import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Toolbox } from "../tools.ts";
import type { PlanContext } from "./types.ts";

/** Output captured from the real tools (see test/fixtures/capture-*.sh). */
export function fixture(path: string): string {
  return readFileSync(join(import.meta.dirname, "__fixtures__", path), "utf8");
}

/** The owner the fixtures were captured with. */
export const fixtureContext: PlanContext = { owner: "fixture", tools: new Toolbox() };
