/**
 * Child process of the hostile-inventory suite: loads each site folder of a
 * list with `loadInventory` and prints one JSON line per case. A separate
 * process, because an unfixed loader may block forever on a FIFO or fill
 * memory from /dev/zero; the parent (supervise.ts) bounds it and restarts
 * past such a case.
 *
 * Usage: node run-cases.ts LIST.json FROM
 *   LIST.json: [{ "id": "...", "dir": "/abs/folder" }, ...]; FROM: first index to run.
 * Output lines: {"start": id} before each case, then
 *   {"id", "outcome": "refused"|"accepted"|"crashed", "problems"?, "message"?, "error"?, "rssGrowthKiB", "ms"}.
 */
import { readFileSync, writeSync } from "node:fs";
import { InventoryError, loadInventory } from "@netfleet/shared";

const [listPath, fromText] = process.argv.slice(2);
const list = JSON.parse(readFileSync(listPath!, "utf8")) as { id: string; dir: string }[];

function line(v: unknown): void {
  // Synchronous: the parent must see "start" before a case that may hang.
  writeSync(1, JSON.stringify(v) + "\n");
}

for (let i = Number(fromText ?? 0); i < list.length; i++) {
  const { id, dir } = list[i]!;
  line({ start: id });
  const before = process.resourceUsage().maxRSS;
  const t0 = performance.now();
  let result: Record<string, unknown>;
  try {
    loadInventory(dir, { cwd: dir });
    result = { outcome: "accepted" };
  } catch (err) {
    if (err instanceof InventoryError) result = { outcome: "refused", problems: err.problems, message: err.message };
    else result = { outcome: "crashed", error: err instanceof Error ? `${err.name}: ${err.message}\n${(err.stack ?? "").split("\n").slice(1, 4).join("\n")}` : String(err) };
  }
  line({ id, ...result, rssGrowthKiB: process.resourceUsage().maxRSS - before, ms: Math.round(performance.now() - t0) });
}
