import { isIPv4, isIPv6 } from "node:net";

/** Where the dashboard listens: an IPv4 address, `localhost` or an IPv6 address (no brackets), and a TCP port. */
export interface UiListen {
  host: string;
  port: number;
}

/** The address `--ui PORT` binds: loopback, so only this host's users reach the dashboard. */
export const UI_DEFAULT_HOST = "127.0.0.1";

/** A `--ui` value that cannot be used (bad form, or a remote address without `--ui-allow-remote`). */
export class UiListenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UiListenError";
  }
}

/**
 * Whether `host` is a loopback address: 127.0.0.0/8 (RFC 1122 3.2.1.3),
 * ::1 (RFC 4291 2.5.3), or the name `localhost` (RFC 6761 6.3: resolves to
 * loopback only).
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost") return true;
  if (isIPv4(h)) return h.startsWith("127.");
  return isIPv6(h) && (h === "::1" || /^(0{1,4}:){7}0{0,3}1$/.test(h) || h === "0:0:0:0:0:0:0:1");
}

/**
 * Parses `--ui`: `PORT` (on 127.0.0.1), `ADDRESS:PORT` (IPv4 or
 * `localhost`) or `[IPv6]:PORT`; ports 1-65535. The dashboard has no
 * login: a non-loopback address is refused unless `allowRemote`
 * (`--ui-allow-remote`), where the operator puts it behind their own
 * authenticating proxy or trusts the network.
 * @throws UiListenError naming the accepted forms, or why a remote address needs --ui-allow-remote.
 */
export function parseUiListen(text: string, allowRemote = false): UiListen {
  const t = text.trim();
  const bad = () => new UiListenError(`--ui takes PORT or ADDRESS:PORT (e.g. 127.0.0.1:8470), not ${JSON.stringify(text)}`);
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(t);
  if (!m) throw bad();
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw bad();
  const given = m[1];
  let host: string;
  if (given === undefined) host = UI_DEFAULT_HOST;
  else if (given.toLowerCase() === "localhost" || isIPv4(given)) host = given;
  else if (given.startsWith("[") && given.endsWith("]") && isIPv6(given.slice(1, -1))) host = given.slice(1, -1);
  else throw bad();
  if (!allowRemote && !isLoopbackHost(host)) {
    throw new UiListenError(
      `--ui ${t}: ${host} is not a loopback address; the dashboard has no login, so it listens on loopback unless --ui-allow-remote is given (then put it behind a proxy that authenticates)`,
    );
  }
  return { host, port };
}

/** `host:port` as a URL authority (IPv6 in brackets). */
export function formatUiListen(l: UiListen): string {
  return isIPv6(l.host) ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/**
 * The Host header values a loopback dashboard answers: its own address,
 * `localhost`, 127.0.0.1 and [::1], each with its port. Anything else is a
 * name that merely resolves here (DNS rebinding: a web page's script on
 * evil.example rebinding its name to 127.0.0.1 sends `Host: evil.example`).
 */
export function allowedHosts(l: UiListen): Set<string> {
  const port = l.port;
  return new Set([formatUiListen(l), `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`].map((h) => h.toLowerCase()));
}
