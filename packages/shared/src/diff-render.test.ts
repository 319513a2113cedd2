import { describe, expect, it } from "vitest";
import { renderChanges } from "./diff-render.ts";
import { unifiedDiff } from "./diff.ts";

describe("renderChanges: what check mode prints for one resource", () => {
  it("one-line values as old -> new, with their real values (null as (none), objects as JSON)", () => {
    expect(renderChanges({ value: { old: "0", new: "1" }, present: { old: false, new: true }, bridge: { old: null, new: "br-secure" }, mtu: { old: { eth0: 1500 }, new: 9000 } })).toEqual([
      "value: 0 -> 1",
      "present: false -> true",
      "bridge: (none) -> br-secure",
      'mtu: {"eth0":1500} -> 9000',
    ]);
  });

  it("lists of lines without a diff: each old line '- ', each new line '+ ' (an empty side prints nothing)", () => {
    expect(renderChanges({ hosts: { old: [], new: ["52:54:00:81:0a:02,10.81.0.12,vma2"] }, flows: { old: ["a", "b"], new: ["c"] } })).toEqual([
      "hosts:",
      "  + 52:54:00:81:0a:02,10.81.0.12,vma2",
      "flows:",
      "  - a",
      "  - b",
      "  + c",
    ]);
  });

  it("with a diff: line lists as counts pointing to it, one-line fields as they are, then the diff's lines", () => {
    const diff = unifiedDiff("x\ny\n", "x\n", { before: "live: f", after: "desired: f" });
    expect(renderChanges({ ruleset: { old: ["y"], new: [] }, running: { old: false, new: true } }, diff)).toEqual([
      "ruleset: 1 line -> 0 lines (in the diff below)",
      "running: false -> true",
      "--- live: f",
      "+++ desired: f",
      "@@ -1,2 +1,1 @@",
      " x",
      "-y",
    ]);
  });

  it("the wire's texts (FieldChange) print the same as the agent's values", () => {
    expect(renderChanges([{ field: "value", before: "0", after: "1" }])).toEqual(renderChanges({ value: { old: "0", new: "1" } }));
  });

  it("control characters an agent sends (ESC, CR, C1, bidi overrides) are printed escaped; tabs stay", () => {
    const diff = "--- live: f\n+++ desired: f\n@@ -1 +1 @@\n-\tok\n+\t\u001b[2Jevil\rline\u009b\u202e\n";
    expect(renderChanges([{ field: "name\u001b]0;x\u0007", before: "a\rb", after: "c" }], diff)).toEqual([
      "name\\u001b]0;x\\u0007: a\\u000db -> c",
      "--- live: f",
      "+++ desired: f",
      "@@ -1 +1 @@",
      "-\tok",
      "+\t\\u001b[2Jevil\\u000dline\\u009b\\u202e",
    ]);
  });
});
