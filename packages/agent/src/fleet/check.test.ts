import { describe, expect, it } from "vitest";
import { CheckReply, DIFF_MAX_CHARS, encodeMessage } from "@netfleet/shared";
import type { ResourceResult } from "../resources/types.ts";
import { REPLY_DIFF_CHARS, checkResult, checkedResults } from "./check.ts";

const pending = (i: number, diffLines: number): ResourceResult => ({
  id: `dnsmasq[net${i}]`,
  result: null,
  changed: false,
  changes: { config: { old: ["dhcp-range=10.0.0.10,10.0.0.99,1h"], new: ["dhcp-range=10.0.0.10,10.0.0.99,2h"] }, running: { old: "pid 42 (old config)", new: "restarted" } },
  commands: [],
  comment: "would change (check mode)",
  durationMs: 1,
  diff: `--- live: /run/netfleet/dnsmasq/net${i}.conf\n+++ desired: /run/netfleet/dnsmasq/net${i}.conf\n` + Array.from({ length: diffLines }, (_, n) => `+line ${n} ${"x".repeat(60)}`).join("\n") + "\n",
});

describe("a check reply's diffs and values", () => {
  it("carries each result's field names, values before and after, diff and the pass's observed hash", () => {
    const pass = checkResult([pending(1, 3)], "a".repeat(64));
    const [r] = checkedResults(pass);
    expect(r).toMatchObject({ id: "dnsmasq[net1]", result: null, changes: ["config", "running"] });
    expect(r!.fields).toEqual([
      { field: "config", before: "dhcp-range=10.0.0.10,10.0.0.99,1h", after: "dhcp-range=10.0.0.10,10.0.0.99,2h" },
      { field: "running", before: "pid 42 (old config)", after: "restarted" },
    ]);
    expect(r!.diff).toBe(pending(1, 3).diff);
    expect(pass.observed).toBe("a".repeat(64));
  });

  it("cuts each diff to DIFF_MAX_CHARS and all of them to REPLY_DIFF_CHARS, saying so; the reply fits NATS's 1 MiB and its schema", () => {
    const results = checkedResults(checkResult(Array.from({ length: 40 }, (_, i) => pending(i, 2000)), "b".repeat(64)));
    expect(results.every((r) => r.diff!.length <= DIFF_MAX_CHARS)).toBe(true);
    expect(results[0]!.diff!.split("\n").at(-1)).toMatch(/^\[\.\.\. \d+ more diff lines not shown/);
    expect(results.reduce((n, r) => n + r.diff!.length, 0)).toBeLessThanOrEqual(REPLY_DIFF_CHARS + 40 * 200);
    expect(results.at(-1)!.diff).toMatch(/^\[diff not shown: this reply's diffs are over their size limit/);
    const reply = CheckReply.parse({ kind: "check-result", site: "lab", host: "backend", revision: 3, hash: null, ok: true, summary: { ok: 0, changed: 0, failed: 0, pending: 40 }, results, observed: "b".repeat(64), at: new Date().toISOString() });
    expect(encodeMessage(reply).length).toBeLessThan(1024 * 1024);
  });
});
