import { describe, expect, it } from "vitest";
import { CORRECTIVE_RECENT, CorrectiveLog, decodeMessage, encodeMessage, type CorrectiveChange } from "@netfleet/shared";
import { MAX_FIELDS, VALUE_CHARS, correctiveChange, cut, differingLines, fieldChanges, fitChanges, nextLog, valueText } from "./corrective.ts";

const AT = "2026-11-29T22:00:00.000Z";
const who = { site: "lab", host: "backend" };

/** A table like `nft list table inet netfleet` prints it, with `n` port-forward rules (long enough to be cut). */
function ruleset(extra: string[] = [], n = 30): string {
  return [
    "table inet netfleet {",
    "\tchain forward {",
    "\t\ttype filter hook forward priority filter; policy accept;",
    ...extra,
    ...Array.from({ length: n }, (_, i) => `\t\tiifname "wan0" ip daddr 10.20.0.${i + 10} tcp dport ${2200 + i} accept comment "netfleet-owner=lab"`),
    "\t}",
    "}",
  ].join("\n");
}

describe("corrective change texts", () => {
  it("writes values as text: strings as they are, lists one element a line, absent as (none), the rest as JSON", () => {
    expect(valueText("1")).toBe("1");
    expect(valueText(["10.0.0.1", "10.0.0.2"])).toBe("10.0.0.1\n10.0.0.2");
    expect(valueText(null)).toBe("(none)");
    expect(valueText(undefined)).toBe("(none)");
    expect(valueText({ mtu: 1500 })).toBe('{"mtu":1500}');
    expect(valueText(1500)).toBe("1500");
  });

  it("cuts a long value at the limit and says how much it cut", () => {
    const long = "x".repeat(1000);
    const c = cut(long, 100);
    expect(c.cut).toBe(true);
    expect(c.text).toHaveLength(100);
    expect(c.text).toMatch(/…\[cut: 900 more chars\]$/);
    expect(cut("short", 100)).toEqual({ text: "short", cut: false });
  });

  it("reduces two long rulesets to the lines that differ: an inserted accept shows as the drift, nothing is lost after it", () => {
    const inserted = '\t\tiifname "bond0.1081" accept';
    const { before, after } = differingLines(ruleset([inserted]), ruleset());
    // 35 lines in common: 3 of header, 30 rules, 2 closing braces.
    expect(before.split("\n")).toEqual(["[35 common lines not shown]", inserted]);
    expect(after.split("\n")).toEqual(["[35 common lines not shown]"]);
  });

  it("counts repeated lines: one of two equal lines removed is a difference", () => {
    expect(differingLines("a\na\nb", "a\nb")).toEqual({ before: "[2 common lines not shown]\na", after: "[2 common lines not shown]" });
  });

  it("a sysctl repaired: one field, before is what the host had, after what the agent put back", () => {
    const change = correctiveChange({ id: "sysctl[net.ipv4.ip_forward]", changes: { value: { old: "0", new: "1" } } }, AT);
    expect(change).toEqual({ id: "sysctl[net.ipv4.ip_forward]", at: AT, corrective: true, changes: [{ field: "value", before: "0", after: "1" }] });
  });

  it("a flushed chain in a long ruleset keeps the missing rules in `after`, marked truncated", () => {
    const flushed = "table inet netfleet {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}";
    const { changes, truncated } = fieldChanges({ ruleset: { old: flushed, new: ruleset() } });
    expect(truncated).toBe(true);
    expect(changes[0]!.before).toBe("[5 common lines not shown]");
    expect(changes[0]!.after.split("\n")[1]).toBe('\t\tiifname "wan0" ip daddr 10.20.0.10 tcp dport 2200 accept comment "netfleet-owner=lab"');
    expect(changes[0]!.after.length).toBeLessThanOrEqual(VALUE_CHARS);
    expect(changes[0]!.after).toMatch(/…\[cut: \d+ more chars\]$/);
  });

  it("keeps at most MAX_FIELDS fields and counts the rest", () => {
    const many = Object.fromEntries(Array.from({ length: MAX_FIELDS + 3 }, (_, i) => [`f${i}`, { old: i, new: i + 1 }]));
    const { changes, truncated } = fieldChanges(many);
    expect(truncated).toBe(true);
    expect(changes).toHaveLength(MAX_FIELDS + 1);
    expect(changes.at(-1)).toEqual({ field: "[...]", before: "", after: "3 more fields not shown" });
  });

  it("a change with every field at its limit still decodes (the wire schema's bounds hold)", () => {
    const huge = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${"k".repeat(300)}${i}`, { old: "a".repeat(5000), new: ["b".repeat(3000), "c"] }]));
    const log = nextLog(undefined, who, [correctiveChange({ id: "x".repeat(300), changes: huge }, AT)], AT);
    expect(decodeMessage(CorrectiveLog, "t", encodeMessage(log)).recent[0]!.truncated).toBe(true);
  });
});

describe("the corrective log", () => {
  const change = (i: number): CorrectiveChange => ({ id: `sysctl[k${i}]`, at: AT, corrective: true, changes: [{ field: "value", before: String(i), after: "0" }] });

  it("counts every change and keeps the last CORRECTIVE_RECENT, oldest first", () => {
    let log = nextLog(undefined, who, [change(1), change(2)], AT);
    expect(log).toMatchObject({ kind: "corrective-log", site: "lab", host: "backend", count: 2, at: AT });
    for (let i = 3; i <= 30; i++) log = nextLog(log, who, [change(i)], AT);
    expect(log.count).toBe(30);
    expect(log.recent).toHaveLength(CORRECTIVE_RECENT);
    expect(log.recent[0]!.id).toBe(`sysctl[k${30 - CORRECTIVE_RECENT + 1}]`);
    expect(log.recent.at(-1)!.id).toBe("sysctl[k30]");
  });

  it("counts changes that were dropped before they could be sent", () => {
    expect(nextLog({ ...nextLog(undefined, who, [change(1)], AT) }, who, [change(2)], AT, { extraCount: 5 }).count).toBe(7);
  });

  it("a report carries the first changes that fit its budget, in order", () => {
    const big = (i: number): CorrectiveChange => ({ ...change(i), changes: [{ field: "ruleset", before: "x".repeat(3000), after: "y".repeat(3000) }] });
    const all = Array.from({ length: 200 }, (_, i) => big(i));
    const kept = fitChanges(all);
    expect(JSON.stringify(kept).length).toBeLessThanOrEqual(64 * 1024);
    expect(kept.length).toBe(10);
    expect(kept.map((c) => c.id)).toEqual(all.slice(0, 10).map((c) => c.id));
    expect(fitChanges([change(1), change(2)])).toEqual([change(1), change(2)]);
  });

  it("drops the oldest entries until the encoded log fits", () => {
    const big = (i: number): CorrectiveChange => ({ ...change(i), changes: [{ field: "ruleset", before: "x".repeat(3000), after: "y".repeat(3000) }] });
    const log = nextLog(undefined, who, Array.from({ length: 20 }, (_, i) => big(i)), AT, { maxBytes: 20_000 });
    expect(encodeMessage(log).length).toBeLessThanOrEqual(20_000);
    expect(log.recent.length).toBeGreaterThan(0);
    expect(log.recent.length).toBeLessThan(20);
    expect(log.recent.at(-1)!.id).toBe("sysctl[k19]");
    expect(log.count).toBe(20);
  });
});
