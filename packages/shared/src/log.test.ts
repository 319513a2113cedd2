import { describe, expect, it } from "vitest";
import { createEventLog, eventLevel, LOG_LEVEL_ENV, parseLogLevel, resolveLogLevel, type LogLevel } from "./log.ts";

/** A logger at `level` whose lines are parsed and kept. */
function capture(level: LogLevel) {
  const lines: string[] = [];
  const log = createEventLog({ level, write: (line) => lines.push(line) });
  return { log, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe("the event log (pino)", () => {
  it("writes one JSON line per event: level name, ISO ts, then the event's own fields, event key kept", () => {
    const c = capture("info");
    c.log({ event: "ready", host: "hv1", servers: ["nats://127.0.0.1:4222"] });
    expect(c.lines).toHaveLength(1);
    expect(c.lines[0]).not.toContain("\n");
    const [line] = c.parsed();
    expect(line).toEqual({ level: "info", ts: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), event: "ready", host: "hv1", servers: ["nats://127.0.0.1:4222"] });
    // What lab/agents.ts and tests grep for in the raw text.
    expect(c.lines[0]).toContain('"event":"ready"');
    // No pid or hostname: journald records both.
    expect(line).not.toHaveProperty("pid");
    expect(line).not.toHaveProperty("hostname");
  });

  it("drops lines under its level: debug lines only at debug or trace; silent writes nothing", () => {
    for (const [level, want] of [["info", ["start"]], ["debug", ["start", "command"]], ["trace", ["start", "command"]], ["warn", []], ["silent", []]] as const) {
      const c = capture(level);
      c.log({ event: "start" });
      c.log({ event: "command", level: "debug", program: "ip" });
      expect(c.parsed().map((e) => e.event), level).toEqual(want);
    }
    const c = capture("debug");
    c.log({ event: "command", level: "debug", program: "ip" });
    // The event's `level` chooses the level and is written once, as the line's level.
    expect(c.parsed()[0]).toMatchObject({ level: "debug", event: "command", program: "ip" });
    expect(c.log.enabled("debug")).toBe(true);
    expect(capture("info").log.enabled("debug")).toBe(false);
  });

  it("chooses levels from event names: failures worked around warn, stops error, fatal fatal, the rest info", () => {
    expect(eventLevel({ event: "ready" })).toBe("info");
    expect(eventLevel({ event: "reconcile", failed: 0 })).toBe("info");
    expect(eventLevel({ event: "reconcile", failed: 2 })).toBe("warn");
    for (const event of ["connection-lost", "sync-error", "reconnect-failed", "assignment-rejected", "enroll-refused", "check-reply-dropped", "watcher-exit", "stop-timeout", "budget-exceeded", "applied-watch-slow"]) {
      expect(eventLevel({ event }), event).toBe("warn");
    }
    for (const event of ["disk-full", "nats-exited", "lock-lost", "lockout-rollback", "metrics-unavailable"]) expect(eventLevel({ event }), event).toBe("error");
    expect(eventLevel({ event: "fatal" })).toBe("fatal");
    expect(eventLevel({ event: "ready", level: "debug" })).toBe("debug");
    // A `level` that is no level is ignored.
    expect(eventLevel({ event: "ready", level: "loud" })).toBe("info");
  });

  it("parses levels and resolves the one in force: flag, else NETFLEET_LOG_LEVEL, else info", () => {
    expect(parseLogLevel(" DEBUG ")).toBe("debug");
    expect(() => parseLogLevel("verbose", "--log-level")).toThrow('--log-level: "verbose" is not a log level; want one of fatal, error, warn, info, debug, trace, silent');
    expect(resolveLogLevel({ env: {} })).toBe("info");
    expect(resolveLogLevel({ env: { [LOG_LEVEL_ENV]: "warn" } })).toBe("warn");
    expect(resolveLogLevel({ env: { [LOG_LEVEL_ENV]: "" } })).toBe("info");
    expect(resolveLogLevel({ flag: "debug", env: { [LOG_LEVEL_ENV]: "warn" } })).toBe("debug");
    expect(() => resolveLogLevel({ env: { [LOG_LEVEL_ENV]: "chatty" } })).toThrow(`${LOG_LEVEL_ENV}: "chatty" is not a log level`);
  });
});
