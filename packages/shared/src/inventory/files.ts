import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { InputProblem } from "../errors.ts";

/**
 * The files of a site folder, read for `loadInventory`: which entries count
 * as inventory files and how each one is read. Every refusal is an
 * `InputProblem` naming the file; nothing here throws for bad input.
 */

/** The `*.yaml`/`*.yml` files of `dir`, sorted; problems (no folder, no files) are pushed to `problems`. */
export function listInventoryFiles(dir: string, show: (p: string) => string, problems: InputProblem[]): string[] {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new Error("not a directory");
    entries = readdirSync(dir);
  } catch (err) {
    problems.push({ file: show(dir), line: 1, col: 1, path: "", message: `cannot read inventory folder: ${(err as Error).message}` });
    return [];
  }
  const files = entries.filter((e) => /\.ya?ml$/.test(e)).sort().map((e) => join(dir, e));
  if (files.length === 0) {
    problems.push({ file: show(dir), line: 1, col: 1, path: "", message: "no *.yaml files in the inventory folder" });
  }
  return files;
}

/** The text of one inventory file, or undefined with a problem pushed. */
export function readInventoryFile(path: string, show: (p: string) => string, problems: InputProblem[]): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    problems.push({ file: show(path), line: 1, col: 1, path: "", message: `cannot read file: ${(err as Error).message}` });
    return undefined;
  }
}
