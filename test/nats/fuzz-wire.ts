/**
 * Below the client library: a NATS client protocol session on a plain TCP
 * socket (https://docs.nats.io/reference/reference-protocols/nats-protocol),
 * to send what nats.js refuses to send, a PUB larger than the server's
 * max_payload. The server must answer `-ERR 'Maximum Payload Violation'`
 * to the PUB line and close the connection; nothing reaches a subscriber.
 * The payload is written only if the server accepts the PUB line (it
 * would be a finding), so the refusal is read before our own write could
 * make the close a reset.
 */
import { connect as tcpConnect } from "node:net";

/** What the server said, and whether it closed the connection. */
export interface WireResult {
  /** Server lines (INFO, +OK, -ERR, PONG ...), CRLF removed. */
  lines: string[];
  closed: boolean;
}

/**
 * Connects to `host:port`, authenticates with `user`/`pass` (verbose, so
 * every command is answered), then sends `PUB <subject> <size>` with `size`
 * bytes of `fill`. Resolves when the server closes the connection or after
 * `waitMs` (bounded either way).
 */
export function oversizedPublish(options: { host: string; port: number; user: string; pass: string; subject: string; size: number; fill?: number; waitMs?: number }): Promise<WireResult> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: options.host, port: options.port });
    const lines: string[] = [];
    let buffer = "";
    let sent = false;
    let oks = 0;
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ lines, closed });
    };
    const timer = setTimeout(finish, options.waitMs ?? 5000);
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // The server closing on us while our payload is still being written: ECONNRESET/EPIPE is the refusal too.
      if (sent && (err.code === "ECONNRESET" || err.code === "EPIPE")) {
        closed = true;
        finish();
      } else {
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on("close", () => {
      closed = true;
      finish();
    });
    socket.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("latin1");
      for (let i = buffer.indexOf("\r\n"); i >= 0; i = buffer.indexOf("\r\n")) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        lines.push(line);
        if (line.startsWith("PING")) socket.write("PONG\r\n");
        if (line.startsWith("INFO ") && !sent) {
          sent = true;
          const connectLine = JSON.stringify({ verbose: true, pedantic: false, user: options.user, pass: options.pass, lang: "fuzz", version: "0", protocol: 1 });
          socket.write(`CONNECT ${connectLine}\r\nPUB ${options.subject} ${options.size}\r\n`);
        } else if (line === "+OK" && ++oks === 2) {
          // The server took the PUB line (verbose: +OK for CONNECT, then for PUB): the payload follows.
          socket.write(Buffer.alloc(options.size, options.fill ?? 0x41));
          socket.write("\r\n");
        }
      }
    });
  });
}
