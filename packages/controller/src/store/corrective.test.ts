import { describe, expect, it } from "vitest";
import type { CorrectiveChange, CorrectiveLog, Report } from "@netfleet/shared";
import { statusDetails } from "../commands/hosts.ts";
import { NO_CORRECTIVE, correctiveStatus, reportWarnings } from "./corrective.ts";

const who = { site: "lab", host: "backend" };
const change = (id: string, at: string, before = "0", after = "1"): CorrectiveChange => ({ id, at, corrective: true, changes: [{ field: "value", before, after }] });
const log = (recent: CorrectiveChange[], host = "backend"): CorrectiveLog => ({ kind: "corrective-log", site: "lab", host, count: 7, recent, at: "2026-11-29T22:05:00.000Z" });

describe("corrective status", () => {
  it("no record: count 0, nothing last", () => {
    expect(correctiveStatus(undefined, who)).toEqual(NO_CORRECTIVE);
  });

  it("shows the count and the kept changes newest first, the newest as last", () => {
    const a = change("sysctl[a]", "2026-11-29T22:00:00.000Z");
    const b = change("nft-table[netfleet]", "2026-11-29T22:04:00.000Z");
    expect(correctiveStatus(log([a, b]), who)).toEqual({ count: 7, last: b, changes: [b, a], at: "2026-11-29T22:05:00.000Z" });
  });

  it("a record naming another host is not shown as this host's", () => {
    expect(correctiveStatus(log([change("sysctl[a]", "2026-11-29T22:00:00.000Z")], "hv1"), who)).toEqual({ ...NO_CORRECTIVE, error: "record names lab/hv1" });
  });

  it("status lines: what was repaired, when, first field before → after (newlines shown), and warnings", () => {
    const last = change("nft-table[netfleet]", "2026-11-29T22:04:00.000Z", '[36 common lines not shown]\n\t\tiifname "bond0.1081" accept', "[36 common lines not shown]");
    const lines = statusDetails({
      corrective: { count: 2, last, changes: [last], at: last.at },
      warnings: [{ id: "nft-table[netfleet]", message: "foreign-drop: table ip filter chain FORWARD drops forwarded traffic" }],
    });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^last repaired nft-table\[netfleet\] \S+ ago \(2026-11-29T22:04:00.000Z\): value /);
    expect(lines[0]).toContain('value [36 common lines not shown] ⏎ \t\tiifname "bond0.1081" accept → [36 common lines not shown]');
    expect(lines[1]).toBe("warning nft-table[netfleet]: foreign-drop: table ip filter chain FORWARD drops forwarded traffic");
    expect(statusDetails({ corrective: NO_CORRECTIVE, warnings: [] })).toEqual([]);
  });

  it("warnings come from the last report's results", () => {
    const report = { results: [{ id: "nft-table[netfleet]", result: true, comment: "foreign-drop: x" }, { id: "sysctl[a]", result: true, comment: "in desired state" }] } as Report;
    expect(reportWarnings(report)).toEqual([{ id: "nft-table[netfleet]", message: "foreign-drop: x" }]);
    expect(reportWarnings(undefined)).toEqual([]);
  });
});
