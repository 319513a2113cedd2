import { describe, expect, it } from "vitest";
import type { AuditRecord } from "@netfleet/shared";
import { matchRecord, type AuditedNic } from "../store/vm-audit.ts";
import { formatAuditLine, parseSince } from "./audit.ts";

const NOW = Date.parse("2026-11-29T22:00:00Z");
const record = (r: Partial<AuditRecord>): AuditRecord => ({ time: "2026-11-29T21:59:00.000Z", network: "secure", verdict: "allow", src: "10.81.0.11", dst: "203.0.113.10", proto: "tcp", sport: 40000, dport: 80, ...r });

describe("netfleet audit", () => {
  it("--since takes a duration back from now or an ISO date-time, and nothing else", () => {
    expect(parseSince("90s", NOW).toISOString()).toBe("2026-11-29T21:58:30.000Z");
    expect(parseSince("15m", NOW).toISOString()).toBe("2026-11-29T21:45:00.000Z");
    expect(parseSince("1h", NOW).toISOString()).toBe("2026-11-29T21:00:00.000Z");
    expect(parseSince("7d", NOW).toISOString()).toBe("2026-11-22T22:00:00.000Z");
    expect(parseSince("2026-11-29T21:30:00Z").toISOString()).toBe("2026-11-29T21:30:00.000Z");
    expect(parseSince("2026-11-29T23:30:00+02:00").toISOString()).toBe("2026-11-29T21:30:00.000Z");
    for (const bad of ["yesterday", "1w", "-1h", "", "2026-13-45T99:00:00Z", "1h; rm"]) expect(() => parseSince(bad, NOW)).toThrow(/--since takes/);
  });

  it("a record is the VM's when it sent it (by frame MAC when the record has one, else by source) or when it was sent to it", () => {
    const vma1: AuditedNic[] = [{ network: "secure", mac: "52:54:00:81:0a:01", addresses: ["10.81.0.11", "10.81.0.50"] }];
    expect(matchRecord(record({ mac: "52:54:00:81:0a:01" }), vma1)).toBe("out");
    expect(matchRecord(record({}), vma1)).toBe("out");
    // vmb1 shares the virtual IP 10.81.0.50: its packets carry its own MAC and are not vma1's.
    expect(matchRecord(record({ src: "10.81.0.50", mac: "52:54:00:81:0b:01" }), vma1)).toBeUndefined();
    expect(matchRecord(record({ src: "10.81.0.50", mac: "52:54:00:81:0a:01" }), vma1)).toBe("out");
    // A DHCP VM whose address changed since: its MAC still names it.
    expect(matchRecord(record({ src: "10.81.0.150", mac: "52:54:00:81:0a:01" }), vma1)).toBe("out");
    expect(matchRecord(record({ src: "198.51.100.9", dst: "10.81.0.11", verdict: "drop", mac: "02:00:00:00:00:01" }), vma1)).toBe("in");
    expect(matchRecord(record({ network: "service" }), vma1)).toBeUndefined();
    expect(matchRecord(record({ src: "10.81.0.12" }), vma1)).toBeUndefined();
  });

  it("prints one line per record: time, reached/refused, direction, protocol, endpoints, network and backend", () => {
    expect(formatAuditLine({ ...record({ verdict: "drop", dport: 25 }), host: "backend", direction: "out" })).toBe(
      "2026-11-29T21:59:00.000Z  refused  out  tcp     10.81.0.11:40000 -> 203.0.113.10:25  (secure at backend)",
    );
    expect(formatAuditLine({ ...record({ proto: "icmp", sport: undefined, dport: undefined, icmp: { type: 8, code: 0 } }), host: "gw", direction: "out" })).toContain("reached  out  icmp    10.81.0.11 -> 203.0.113.10 type 8/0");
    expect(formatAuditLine({ ...record({ src: "fd07::2", dst: "fd08::2", dport: 443 }), host: "gw", direction: "out" })).toContain("[fd07::2]:40000 -> [fd08::2]:443");
  });
});
