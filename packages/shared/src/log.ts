import { pino, type DestinationStream, type Logger } from "pino";

/** The log levels, most severe first (pino's names; `silent` logs nothing). */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** One of LOG_LEVELS. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The level when neither a flag, NETFLEET_LOG_LEVEL nor a config file says. */
export const DEFAULT_LOG_LEVEL: LogLevel = "info";

/** The environment variable that sets the level of `netfleet serve` and `netfleet-agent run`. */
export const LOG_LEVEL_ENV = "NETFLEET_LOG_LEVEL";

/** A log level that is not one of LOG_LEVELS; the message names where it came from. */
export class LogLevelError extends Error {
  readonly source: string;
  constructor(source: string, value: string) {
    super(`${source}: ${JSON.stringify(value)} is not a log level; want one of ${LOG_LEVELS.join(", ")}`);
    this.name = "LogLevelError";
    this.source = source;
  }
}

/**
 * `text` as a log level (case and surrounding blanks ignored).
 * @throws LogLevelError naming `source` (e.g. `--log-level`, `NETFLEET_LOG_LEVEL`) and the levels there are.
 */
export function parseLogLevel(text: string, source = "log level"): LogLevel {
  const level = text.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new LogLevelError(source, text);
}

/**
 * The level in force: the command line's flag, else NETFLEET_LOG_LEVEL
 * (when set and not empty), else the config file's, else info. The usual
 * order of a daemon: what the operator typed beats the environment
 * (a systemd drop-in), which beats the file.
 * @throws LogLevelError naming NETFLEET_LOG_LEVEL when the variable holds no level.
 */
export function resolveLogLevel(o: { flag?: LogLevel | undefined; config?: LogLevel | undefined; env?: NodeJS.ProcessEnv }): LogLevel {
  if (o.flag) return o.flag;
  const env = (o.env ?? process.env)[LOG_LEVEL_ENV];
  if (env !== undefined && env.trim() !== "") return parseLogLevel(env, LOG_LEVEL_ENV);
  return o.config ?? DEFAULT_LOG_LEVEL;
}

/** Events that mean the process cannot go on as asked (error), besides `fatal` itself. */
const ERROR_EVENTS = new Set(["disk-full", "nats-exited", "lock-lost", "lockout-rollback", "upgrade-failed", "metrics-unavailable"]);
/** Event name endings that report something that went wrong and was worked around (warn). */
const WARN_SUFFIX = /-(error|errors|failed|rejected|refused|dropped|unreadable|unparsable|lost|exit|timeout|reverted|exceeded|slow|suppressed|ignored|retry)$/;

/**
 * The level of one event line, from its fields: its own `level` when it
 * gives one of LOG_LEVELS; `fatal` for event `fatal`; error for the events
 * that stop a service (ERROR_EVENTS); warn for names that report a failure
 * worked around (`*-error`, `*-failed`, `*-rejected`, `connection-lost`,
 * ...; WARN_SUFFIX) and for a `reconcile` with failed resources; else info.
 */
export function eventLevel(event: Record<string, unknown>): Exclude<LogLevel, "silent"> {
  const own = event.level;
  if (typeof own === "string" && own !== "silent" && (LOG_LEVELS as readonly string[]).includes(own)) return own as Exclude<LogLevel, "silent">;
  const name = typeof event.event === "string" ? event.event : "";
  if (name === "fatal") return "fatal";
  if (ERROR_EVENTS.has(name)) return "error";
  if (WARN_SUFFIX.test(name)) return "warn";
  if (name === "reconcile" && typeof event.failed === "number" && event.failed > 0) return "warn";
  return "info";
}

/**
 * What every service of ours logs through: one call per event, a record
 * with an `event` name (tests and operators select lines by it) and its
 * fields. `enabled(level)` says whether a line of that level is written
 * (to skip building costly debug records).
 */
export interface EventLog {
  (event: Record<string, unknown>): void;
  readonly level: LogLevel;
  enabled(level: Exclude<LogLevel, "silent">): boolean;
}

/**
 * A levelled JSON-lines logger (pino): each event is one line
 * `{"level":"info","ts":"2026-11-30T10:00:00.000Z","event":"ready",...}` —
 * the level as its name, `ts` in ISO 8601 UTC as the lines had before
 * levels, then the event's own fields (a `level` field chooses the level
 * and is not repeated; see eventLevel). No pid or hostname: journald
 * records both for a unit's stdout. Lines under `level` are dropped.
 *
 * `write` (default: stdout, written synchronously, so a line logged just
 * before process.exit is not lost) receives each line without its newline.
 */
export function createEventLog(o: { level?: LogLevel; write?: (line: string) => void } = {}): EventLog {
  const level = o.level ?? DEFAULT_LOG_LEVEL;
  const destination: DestinationStream = o.write
    ? { write: (line: string) => o.write!(line.endsWith("\n") ? line.slice(0, -1) : line) }
    : pino.destination({ fd: 1, sync: true });
  const logger: Logger = pino(
    {
      level,
      base: undefined,
      timestamp: () => `,"ts":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  const log = (event: Record<string, unknown>): void => {
    const at = eventLevel(event);
    if (!logger.isLevelEnabled(at)) return;
    const { level: _level, ...fields } = event;
    logger[at](fields);
  };
  return Object.assign(log, { level, enabled: (l: Exclude<LogLevel, "silent">) => logger.isLevelEnabled(l) });
}
