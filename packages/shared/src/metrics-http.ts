import { createServer, type Server } from "node:http";
import { isIPv6 } from "node:net";
import type { Command } from "commander";
import { optionValue } from "./cli/program.ts";
import { isIpv4 } from "./ipv4.ts";
import { parseLogLevel, type LogLevel } from "./log.ts";

/** Where a /metrics listener binds: an IPv4 address, `localhost`, or an IPv6 address (without brackets), and a TCP port. */
export interface MetricsListen {
  host: string;
  port: number;
}

/** The address a metrics listener binds when only a port is given: loopback, so only this host can scrape. */
export const METRICS_DEFAULT_HOST = "127.0.0.1";

/** A metrics address that cannot be used; the message names where it came from. */
export class MetricsListenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MetricsListenError";
  }
}

/**
 * A metrics listener setting: `off` (no listener: undefined), `PORT`
 * (loopback: 127.0.0.1:PORT), `ADDRESS:PORT` (IPv4 address or
 * `localhost`), or `[IPv6]:PORT`; ports 1-65535.
 * @throws MetricsListenError `<source>: want off, PORT or ADDRESS:PORT (e.g. 127.0.0.1:9471), not "..."`.
 */
export function parseMetricsListen(text: string, source = "metrics"): MetricsListen | undefined {
  const t = text.trim();
  if (t.toLowerCase() === "off") return undefined;
  const bad = () => new MetricsListenError(`${source}: want off, PORT or ADDRESS:PORT (e.g. 127.0.0.1:9471), not ${JSON.stringify(text)}`);
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(t);
  if (!m) throw bad();
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw bad();
  const given = m[1];
  if (given === undefined) return { host: METRICS_DEFAULT_HOST, port };
  if (given.toLowerCase() === "localhost" || isIpv4(given)) return { host: given, port };
  if (given.startsWith("[") && given.endsWith("]") && isIPv6(given.slice(1, -1))) return { host: given.slice(1, -1), port };
  throw bad();
}

/** `host:port` as a URL authority (IPv6 in brackets). */
export function formatMetricsListen(l: MetricsListen): string {
  return isIPv6(l.host) ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** What a scrape returns: the exposition's content type and text (prom-client's Registry.contentType and metrics()). */
export interface MetricsPage {
  contentType: string;
  body: string;
}

/**
 * A plain HTTP listener for Prometheus: `GET /metrics` answers
 * `render()` (200; 500 with its error's message when it throws), `GET /`
 * a line pointing there, anything else 404 (other methods 405). No TLS and
 * no auth: it binds loopback unless told otherwise, and serves counters,
 * never secrets.
 */
export class MetricsServer {
  /** Where it listens (the port the kernel gave when 0 was asked). */
  readonly address: MetricsListen;
  private readonly server: Server;

  private constructor(server: Server, address: MetricsListen) {
    this.server = server;
    this.address = address;
  }

  /**
   * Listens on `listen` and serves `render`.
   * @throws MetricsListenError `metrics: cannot listen on ADDRESS:PORT: <reason>` (address in use, not local, ...).
   */
  static async start(listen: MetricsListen, render: () => Promise<MetricsPage>): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
        return;
      }
      if (path === "/") {
        res.writeHead(200, { "content-type": "text/plain" }).end("netfleet metrics: GET /metrics\n");
        return;
      }
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found; the metrics are at /metrics\n");
        return;
      }
      render().then(
        (page) => res.writeHead(200, { "content-type": page.contentType }).end(req.method === "HEAD" ? undefined : page.body),
        (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`${(err as Error).message}\n`),
      );
    });
    // Scrapes are short: an idle keep-alive socket must not hold a stopping process.
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => reject(new MetricsListenError(`metrics: cannot listen on ${formatMetricsListen(listen)}: ${err.code === "EADDRINUSE" ? "address in use" : err.message}`));
      server.once("error", failed);
      server.listen(listen.port, listen.host, () => {
        server.removeListener("error", failed);
        resolve();
      });
    });
    const bound = server.address();
    const port = typeof bound === "object" && bound ? bound.port : listen.port;
    server.unref();
    return new MetricsServer(server, { host: listen.host, port });
  }

  /** Stops listening and ends open connections. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/**
 * Starts the /metrics listener of a service, or logs why it could not:
 * `metrics-listening` with its URL, else `metrics-unavailable` (level
 * error) and undefined: the service runs on without metrics.
 */
export async function startMetricsServer(listen: MetricsListen, render: () => Promise<MetricsPage>, log: (event: Record<string, unknown>) => void): Promise<MetricsServer | undefined> {
  try {
    const server = await MetricsServer.start(listen, render);
    log({ event: "metrics-listening", url: `http://${formatMetricsListen(server.address)}/metrics` });
    return server;
  } catch (err) {
    log({ event: "metrics-unavailable", error: (err as Error).message });
    return undefined;
  }
}

/** `--metrics` and `--log-level` as parsed: `"off"` for no listener. */
export interface ObservabilityFlags {
  metrics?: MetricsListen | "off";
  logLevel?: LogLevel;
}

/**
 * Adds `--metrics ADDRESS:PORT|PORT|off` (default `defaultListen`) and
 * `--log-level LEVEL` to a service's command (`netfleet serve`,
 * `netfleet-agent run`); values are checked while parsing (a bad one is a
 * usage error naming the option).
 */
export function withObservabilityOptions(cmd: Command, defaultListen: MetricsListen): Command {
  return cmd
    .option(
      "--metrics <address>",
      `where to serve Prometheus metrics (GET /metrics): PORT (on 127.0.0.1), ADDRESS:PORT, or off (default ${formatMetricsListen(defaultListen)})`,
      optionValue((text): MetricsListen | "off" => parseMetricsListen(text, "--metrics") ?? "off"),
    )
    .option(
      "--log-level <level>",
      "fatal, error, warn, info, debug, trace or silent (default $NETFLEET_LOG_LEVEL, else info)",
      optionValue((text) => parseLogLevel(text, "--log-level")),
    );
}

/**
 * A service's metrics listener and log level from those flags:
 * `defaultListen` when `--metrics` is absent, none for `off`; the level
 * only when given (the service then asks NETFLEET_LOG_LEVEL, resolveLogLevel).
 */
export function observabilitySettings(v: ObservabilityFlags, defaultListen: MetricsListen): { metrics?: MetricsListen; logLevel?: LogLevel } {
  const metrics = v.metrics === undefined ? defaultListen : v.metrics === "off" ? undefined : v.metrics;
  return { ...(metrics ? { metrics } : {}), ...(v.logLevel ? { logLevel: v.logLevel } : {}) };
}
