/**
 * Small TCP tools for the lab's "internet" and VMs, run inside their
 * namespaces with `ip netns exec NS node labnet.ts ...`:
 *
 *   serve NAME IP:PORT[,IP:PORT...]   greets every connection with
 *                                     `NAME <peer address>\n`, then echoes
 *                                     each line back as `NAME <line>\n`
 *   connect IP PORT [TIMEOUT_MS]      prints the greeting line; exit 0, or 1
 *                                     when the network gave no connection
 *                                     (stderr `labnet: no-connection KIND: ...`,
 *                                     KIND one of refused, timeout, unreachable,
 *                                     reset, closed), 2 on any other error
 *   hold IP PORT                      one long connection: prints the
 *                                     greeting, then sends each stdin line and
 *                                     prints its echo (exit 1 when it breaks)
 *
 * The greeting names the address the server saw: that is how the lab checks
 * masquerading (a VM's traffic must arrive from the backend's address) and
 * port-forwards (the VM's service must answer through the backend).
 * Exit codes: 0 done, 1 no connection (a network answer), 2 error (bad
 * arguments, anything unexpected), 64 usage: a probe that reads 1 as
 * "blocked" never mistakes a broken tool for a policy.
 */
import { createConnection, createServer, isIPv4, type Socket } from "node:net";
import { createInterface } from "node:readline";

const NAME = /^[A-Za-z0-9_.-]{1,32}$/;

function parseEndpoint(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(":");
  const host = text.slice(0, i);
  const port = Number(text.slice(i + 1));
  if (i < 0 || !isIPv4(host) || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad endpoint ${JSON.stringify(text)} (want IPv4:PORT)`);
  return { host, port };
}

function serve(name: string, endpoints: string[]): void {
  if (!NAME.test(name)) throw new Error(`bad server name ${JSON.stringify(name)}`);
  const sockets = new Set<Socket>();
  const servers = endpoints.map((e) => {
    const { host, port } = parseEndpoint(e);
    const server = createServer((s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => s.destroy());
      s.write(`${name} ${s.remoteAddress?.replace(/^::ffff:/, "") ?? "?"}\n`);
      createInterface({ input: s }).on("line", (line) => s.write(`${name} ${line.slice(0, 200)}\n`));
    });
    server.listen(port, host);
    return server;
  });
  const stop = () => {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/** Why the network gave no connection, from a socket error: a word a probe can branch on. */
export type NoConnection = "refused" | "timeout" | "unreachable" | "reset" | "closed";

/** A connection that did not happen for a network reason (not a bug or bad input). */
export class NoConnectionError extends Error {
  readonly kind: NoConnection;
  constructor(kind: NoConnection, message: string) {
    super(message);
    this.kind = kind;
  }
}

const NETWORK_CODES: Record<string, NoConnection> = {
  ECONNREFUSED: "refused",
  ETIMEDOUT: "timeout",
  EHOSTUNREACH: "unreachable",
  ENETUNREACH: "unreachable",
  EACCES: "unreachable", // an ICMP "administratively prohibited" answer
  ECONNRESET: "reset",
  EPIPE: "reset",
};

function networkError(err: Error & { code?: string }): Error {
  const kind = err.code ? NETWORK_CODES[err.code] : undefined;
  return kind ? new NoConnectionError(kind, err.message) : err;
}

/**
 * Opens a TCP connection and reads the greeting line. Rejects with a
 * NoConnectionError when the network gives no connection (refused, reset,
 * unreachable, silent for `timeoutMs`, closed before greeting), with another
 * error otherwise.
 */
function open(host: string, port: number, timeoutMs: number): Promise<{ socket: Socket; greeting: string; lines: AsyncIterator<string> }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new NoConnectionError("timeout", `no answer from ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(networkError(err));
    });
    const lines = createInterface({ input: socket })[Symbol.asyncIterator]();
    socket.once("connect", () => {
      void lines.next().then((first) => {
        clearTimeout(timer);
        if (first.done) reject(new NoConnectionError("closed", `${host}:${port} closed the connection without a greeting`));
        else resolve({ socket, greeting: first.value, lines });
      }, (err: Error) => reject(networkError(err)));
    });
  });
}

async function connect(host: string, port: number, timeoutMs: number): Promise<number> {
  const c = await open(host, port, timeoutMs);
  process.stdout.write(`${c.greeting}\n`);
  c.socket.destroy();
  return 0;
}

async function hold(host: string, port: number): Promise<number> {
  const c = await open(host, port, 5000);
  process.stdout.write(`${c.greeting}\n`);
  let broken = false;
  c.socket.on("close", () => {
    broken = true;
  });
  for await (const line of createInterface({ input: process.stdin })) {
    if (broken) break;
    c.socket.write(`${line}\n`);
    const reply = await Promise.race([c.lines.next(), new Promise<undefined>((r) => setTimeout(r, 3000, undefined))]);
    if (!reply || reply.done) {
      process.stdout.write("BROKEN\n");
      c.socket.destroy();
      return 1;
    }
    process.stdout.write(`${reply.value}\n`);
  }
  c.socket.destroy();
  return broken ? 1 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  if (cmd === "serve" && args.length === 2) {
    serve(args[0]!, args[1]!.split(","));
    return -1; // keeps running
  }
  if ((cmd === "connect" || cmd === "hold") && args.length >= 2) {
    const { host, port } = parseEndpoint(`${args[0]}:${args[1]}`);
    if (cmd === "hold") return hold(host, port);
    const timeout = Number(args[2] ?? 2000);
    if (!Number.isInteger(timeout) || timeout < 100 || timeout > 30_000) throw new Error("TIMEOUT_MS must be 100-30000");
    return connect(host, port, timeout);
  }
  process.stderr.write("usage: labnet.ts serve NAME IP:PORT[,...] | connect IP PORT [TIMEOUT_MS] | hold IP PORT\n");
  return 64;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: Error) => {
      if (err instanceof NoConnectionError) {
        process.stderr.write(`labnet: no-connection ${err.kind}: ${err.message}\n`);
        process.exitCode = 1;
      } else {
        process.stderr.write(`labnet: error: ${err.message}\n`);
        process.exitCode = 2;
      }
    },
  );
}
