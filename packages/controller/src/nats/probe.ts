import { readFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";

/*
 * Read-only probes of a nats-server (its client port's INFO line, its
 * monitoring endpoint, its pid and log files) that NatsServer uses to
 * tell its own node from another listener and to wait for health and reloads.
 */

/** What /varz or a client port's INFO says about a server (the fields we use). */
export interface ServerFacts {
  server_id?: string;
  server_name?: string;
  start?: string;
  tags?: string[];
}

/**
 * The INFO line a NATS server sends first on its client port (NATS client
 * protocol), parsed; undefined when nothing listens or it is not NATS
 * within 1 s (then `{}` when something did accept the connection).
 */
export function natsInfo(host: string, port: number): Promise<ServerFacts | undefined> {
  return new Promise((resolve) => {
    let data = "";
    let connected = false;
    const socket = tcpConnect({ host, port });
    const done = (value: ServerFacts | undefined) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(1000, () => done(connected ? {} : undefined));
    socket.once("connect", () => (connected = true));
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString("utf8");
      const end = data.indexOf("\r\n");
      if (end < 0 && data.length < 65536) return;
      const m = /^INFO\s+(\{.*\})/.exec(end < 0 ? data : data.slice(0, end));
      try {
        done(m ? (JSON.parse(m[1]!) as ServerFacts) : {});
      } catch {
        done({});
      }
    });
    socket.once("error", () => done(connected ? {} : undefined));
    socket.once("end", () => done(connected ? {} : undefined));
  });
}

/** "nats-server nf-1 (server_id N…, started T, pid P)"; the pid when the node's pid file names a live nats-server. */
export async function describe(facts: ServerFacts, pidFile: string): Promise<string> {
  const parts: string[] = [];
  if (facts.server_id) parts.push(`server_id ${facts.server_id}`);
  if (facts.start) parts.push(`started ${facts.start}`);
  const pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
  if (pid > 0 && (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim() === "nats-server") parts.push(`pid ${pid} per ${pidFile}`);
  const what = facts.server_id ? `nats-server ${facts.server_name ?? ""}`.trim() : "a listener that is not NATS";
  return parts.length ? `${what} (${parts.join(", ")})` : what;
}

/** The server's `config_load_time` from its monitoring endpoint's /varz (`monitorUrl`: http://host:port), undefined when it does not answer within 1 s. */
export async function loadTime(monitorUrl: string): Promise<string | undefined> {
  const varz = (await getJson(`${monitorUrl}/varz`)) as { config_load_time?: string } | undefined;
  return varz?.config_load_time;
}

/** The HTTP status of a GET of `url` (e.g. /healthz), undefined when nothing answers within 1 s. */
export async function fetchStatus(url: string): Promise<number | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return undefined;
  }
}

/** The JSON body of a GET of `url`, undefined when it fails, is not 2xx or takes over 1 s. */
export async function getJson(url: string): Promise<unknown> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.ok ? await res.json() : undefined;
  } catch {
    return undefined;
  }
}

/** The last 8 lines of a log file (empty when it cannot be read): what a NatsServerError shows. */
export async function tail(file: string): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-8).join("\n");
}

/**
 * Asks `probe` every `intervalMs` until it gives a value, for `timeoutMs`
 * at most (then undefined). A poll of a condition, not a retry of a
 * failure: a probe that throws ends it.
 */
export async function poll<T>(probe: () => Promise<T | undefined>, intervalMs: number, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
