import { isAbsolute, relative, sep } from "node:path";
import { InventoryError, type InputProblem } from "../errors.ts";
import { SourceFile } from "./source.ts";
import { InventoryFile } from "./schema.ts";
import { zodProblems } from "./problems.ts";
import { listInventoryFiles, readInventoryFile } from "./files.ts";
import { checkSite, type ParsedFile } from "./site.ts";
import type { Inventory } from "./model.ts";

/**
 * Reads every `*.yaml`/`*.yml` file of a site folder, validates it against
 * the schema and the site-wide rules, and returns the merged inventory.
 * Throws `InventoryError` with every problem found, each naming its
 * file, line, column and path; file names are shown relative to
 * `options.cwd` (default: the working directory). The files are read and
 * parsed here (files.ts, source.ts, schema.ts); the rules across them are
 * site.ts's.
 */
export function loadInventory(dir: string, options: { cwd?: string } = {}): Inventory {
  const cwd = options.cwd ?? process.cwd();
  // Inside the working directory a path is shown relative to it; outside, as the absolute path it is (not `../../x`).
  const show = (p: string) => {
    const rel = relative(cwd, p);
    return rel === "" ? "." : rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel) ? p : rel;
  };
  const problems: InputProblem[] = [];
  const files = listInventoryFiles(dir, show, problems);
  if (problems.length > 0) throw new InventoryError(problems);

  const parsed: ParsedFile[] = [];
  for (const path of files) {
    const text = readInventoryFile(path, show, problems);
    if (text === undefined) continue;
    const { file, value, problems: yamlProblems } = SourceFile.parse(show(path), text);
    if (yamlProblems.length > 0) {
      problems.push(...yamlProblems);
      continue;
    }
    if (value === null || value === undefined) continue;
    const result = InventoryFile.safeParse(value);
    if (!result.success) {
      problems.push(...zodProblems(file, [], result.error));
      continue;
    }
    parsed.push({ file, data: result.data });
  }
  if (problems.length > 0) throw new InventoryError(problems);

  return checkSite(dir, show(dir), parsed);
}
