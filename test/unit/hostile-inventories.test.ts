/**
 * Issue 13, deliverable 7: a seeded generator of broken and hostile
 * inventories (test/unit/hostile/). Each case is the valid baseline site
 * with one mutation; loading it must end in InventoryError with located,
 * one-line, escaped problems and nothing echoed from outside the folder.
 * Legitimate twins of the same kinds must still load. The CLI side (exit 2,
 * no command run, nothing written) is test/unit/hostile/cli.test.ts.
 *
 * A failure names the run seed: NETFLEET_HOSTILE_SEED=<seed> replays it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CATEGORIES, CONTROLS, folderOf, generateCases, hostileSeed, OPERATORS } from "./hostile/generate.ts";
import { judge, visible } from "./hostile/judge.ts";
import { Scratch } from "./hostile/scratch.ts";
import { Site } from "./hostile/site.ts";
import { superviseCases, type CaseResult } from "./hostile/supervise.ts";

/** A case that gives no answer in this long is hung (a blocked read); loads of any inventory take milliseconds. */
const HANG_BOUND_MS = 15_000;

const seed = hostileSeed();
const cases = generateCases(seed);
const controls = CONTROLS.map((c, i) => ({ id: `control#${i}`, ...c }));
let scratch: Scratch;
let results: Map<string, CaseResult>;

beforeAll(async () => {
  scratch = new Scratch("nf-hostile-");
  const list: { id: string; dir: string }[] = [];
  for (const c of cases) list.push({ id: c.id, dir: scratch.write(folderOf(c.id), c.build()) });
  for (const c of controls) {
    const site = Site.baseline();
    c.apply(site);
    list.push({ id: c.id, dir: scratch.write(folderOf(c.id), site) });
  }
  results = await superviseCases(list, scratch.root, HANG_BOUND_MS, scratch.env());
}, 600_000);

afterAll(() => scratch?.remove());

describe(`hostile inventories (seed ${seed}; replay with NETFLEET_HOSTILE_SEED=${seed})`, () => {
  it("draws at least 500 cases, from every category of the issue", () => {
    const perCategory = Object.fromEntries(CATEGORIES.map((c) => [c, cases.filter((x) => x.operator.category === c).length]));
    expect(cases.length).toBeGreaterThanOrEqual(500);
    for (const c of CATEGORIES) expect(perCategory[c], c).toBeGreaterThan(0);
    for (const op of OPERATORS) expect(cases.some((x) => x.operator === op), op.name).toBe(true);
  });

  it.each(controls.map((c) => [c.name, c.id] as const))("positive control loads: %s", (_name, id) => {
    const r = results.get(id);
    expect(r?.outcome === "refused" ? r.problems?.map((p) => visible(`${p.file}:${p.line}:${p.col}: ${p.path}: ${p.message}`)) : r?.outcome).toBe("accepted");
  });

  it.each(OPERATORS.map((op) => [`${op.category}/${op.name}`, op] as const))("%s: every case refused, located, one line, nothing leaked", (_label, op) => {
    const failures: string[] = [];
    for (const c of cases.filter((x) => x.operator === op)) {
      for (const reason of judge(results.get(c.id), { marker: scratch.marker, secretDir: scratch.secretDir })) {
        failures.push(`${c.id} [seed ${seed}] ${c.mutation.detail}: ${reason}`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe("the judge refuses what it must (so a green run means something)", () => {
  const leaks = { marker: "zqmarker123", secretDir: "/tmp/nf-hostile-x/secret" };
  const refused = (p: Partial<{ file: string; line: number; col: number; path: string; message: string }>, extra: Partial<CaseResult> = {}): CaseResult => ({
    id: "x",
    outcome: "refused",
    problems: [{ file: "hosts.yaml", line: 3, col: 5, path: "hosts.hv1", message: "unknown key \"x\"", ...p }],
    ...extra,
  });
  it.each([
    ["a clean refusal", refused({}), []],
    ["accepted", { id: "x", outcome: "accepted" } as CaseResult, ["accepted"]],
    ["another exception", { id: "x", outcome: "crashed", error: "RangeError: Maximum call stack size exceeded" } as CaseResult, ["crashed"]],
    ["a hang", { id: "x", outcome: "hung", error: "no answer within 15 s" } as CaseResult, ["hung"]],
    ["no problem at all", { id: "x", outcome: "refused", problems: [] } as CaseResult, ["without any problem"]],
    ["a file outside the folder", refused({ file: "../secret/key.txt" }), ["not inside"]],
    ["an absolute file", refused({ file: "/etc/shadow" }), ["not inside"]],
    ["line 0", refused({ line: 0 }), ["no position"]],
    ["a forged second line", refused({}, { message: "hosts.yaml:3:5: hosts.hv1: unknown key \"a\nhosts.yaml:1:1: ok\"" }), ["2 lines for 1"]],
    ["a raw ESC", refused({}, { message: "hosts.yaml:3:5: hosts.\u001b[2J: unknown key" }), ["raw control"]],
    ["a raw U+202E", refused({}, { message: "a\u202elmay.yaml:3:5: hosts.hv1: unknown key" }), ["raw control"]],
    ["the marker", refused({ message: "unknown key \"zqmarker123\"" }), ["marker"]],
    ["the secret's path", refused({ message: "cannot read /tmp/nf-hostile-x/secret/key.txt" }), ["outside the folder"]],
    ["a flood", refused({ message: "x".repeat(5000) }), ["character line"]],
    ["a device read whole", refused({}, { rssGrowthKiB: 1024 * 1024 }), ["MiB into memory"]],
  ] as const)("%s", (_name, result, expected) => {
    const reasons = judge(result, leaks);
    expect(reasons.length).toBe(expected.length);
    expected.forEach((e, i) => expect(reasons[i]).toContain(e));
  });
});

