import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatProblem, InventoryError, loadInventory } from "@netfleet/shared";

// Each folder under bad-inventories/ is the _baseline site with one thing
// broken; expect.txt holds the exact `file:line:col: path: message` lines.
const root = join(import.meta.dirname, "bad-inventories");
const cases = readdirSync(root).filter((name) => name !== "_baseline").sort();

function problemsOf(dir: string): string[] {
  try {
    loadInventory(dir, { cwd: dir });
  } catch (err) {
    if (err instanceof InventoryError) return err.problems.map(formatProblem);
    throw err;
  }
  throw new Error(`${dir} loaded without problems`);
}

describe("bad inventories", () => {
  it("the baseline loads", () => {
    const inventory = loadInventory(join(root, "_baseline"));
    expect(inventory.networks.map((n) => n.name)).toEqual(["alpha", "beta"]);
    expect(inventory.hosts.map((h) => `${h.name}:${h.role}`)).toEqual(["gw:backend", "hv1:vmhost"]);
  });

  it("every case has an expect.txt", () => {
    expect(cases.length).toBeGreaterThanOrEqual(147);
    expect(cases.filter((name) => !existsSync(join(root, name, "expect.txt")))).toEqual([]);
  });

  it.each(cases)("%s", (name) => {
    const dir = join(root, name);
    const expected = readFileSync(join(dir, "expect.txt"), "utf8").split("\n").filter((line) => line !== "");
    expect(problemsOf(dir)).toEqual(expected);
  });
});
