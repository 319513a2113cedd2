import { mkdtemp, rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsServer, controllerUser } from "@netfleet/controller";
import { AUTH_TIMEOUT_S } from "../../packages/controller/src/nats/config.ts";

const BASE_PORT = 23870;
let dir = "";
let server: NatsServer | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nf-auth-timeout-"));
  server = await NatsServer.start({ dir, nodes: 1, basePort: BASE_PORT, users: [controllerUser("controller", "secret-pw")] });
});

afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Opens a raw client connection, waits `delayMs` before sending CONNECT (user, password) and a PING,
 * and resolves with what the server said by then: "+OK"/"PONG" when it took the login, "-ERR ..." when not.
 */
function lateLogin(port: number, delayMs: number, password: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, "127.0.0.1");
    let text = "";
    const done = (out: string) => {
      clearTimeout(giveUp);
      socket.destroy();
      resolve(out);
    };
    const giveUp = setTimeout(() => done(text), delayMs + 5000);
    socket.on("error", reject);
    socket.on("data", (d) => {
      text += d.toString();
      if (/PONG|-ERR/.test(text.replace(/^INFO .*\r\n/, ""))) done(text);
    });
    setTimeout(() => socket.write(`CONNECT ${JSON.stringify({ user: "controller", pass: password, verbose: false, pedantic: false, protocol: 1 })}\r\nPING\r\n`), delayMs);
  });
}

describe("nats-server's auth timeout", () => {
  it(`is ${AUTH_TIMEOUT_S} s: a CONNECT 3 s after the connection (past nats-server's default 2 s) is still taken; a wrong password is still refused`, async () => {
    const port = server!.nodes[0]!.config.port;
    const varz = (await (await fetch(`${server!.nodes[0]!.monitorUrl}/varz`)).json()) as { auth_timeout: number };
    expect(varz.auth_timeout).toBe(AUTH_TIMEOUT_S);
    const [late, wrong] = await Promise.all([lateLogin(port, 3000, "secret-pw"), lateLogin(port, 0, "wrong-pw")]);
    expect(late).toMatch(/PONG/);
    expect(late).not.toMatch(/Authentication Timeout/);
    expect(wrong).toMatch(/-ERR 'Authorization Violation'/);
  }, 20_000);
});
