import { describe, expect, it } from "vitest";
import { allowedHosts, formatUiListen, isLoopbackHost, parseUiListen } from "./listen.ts";

describe("--ui ADDRESS:PORT", () => {
  it("takes PORT (loopback), ADDRESS:PORT and [IPv6]:PORT", () => {
    expect(parseUiListen("8470")).toEqual({ host: "127.0.0.1", port: 8470 });
    expect(parseUiListen("127.0.0.2:8470")).toEqual({ host: "127.0.0.2", port: 8470 });
    expect(parseUiListen("localhost:1")).toEqual({ host: "localhost", port: 1 });
    expect(parseUiListen("[::1]:65535")).toEqual({ host: "::1", port: 65535 });
    expect(formatUiListen({ host: "::1", port: 80 })).toBe("[::1]:80");
  });

  it("refuses a non-loopback address unless allowed, saying why", () => {
    expect(() => parseUiListen("10.99.0.254:8470")).toThrow("--ui 10.99.0.254:8470: 10.99.0.254 is not a loopback address; the dashboard has no login, so it listens on loopback unless --ui-allow-remote is given");
    expect(() => parseUiListen("0.0.0.0:8470")).toThrow(/not a loopback address/);
    expect(() => parseUiListen("[::]:8470")).toThrow(/not a loopback address/);
    expect(parseUiListen("0.0.0.0:8470", true)).toEqual({ host: "0.0.0.0", port: 8470 });
  });

  it("refuses what is not an address and a port", () => {
    for (const bad of ["", "x", "0", "65536", "host.example:80", "::1:80", "127.0.0.1:", "1.2.3:80"]) {
      expect(() => parseUiListen(bad, true), bad).toThrow(`--ui takes PORT or ADDRESS:PORT (e.g. 127.0.0.1:8470), not ${JSON.stringify(bad)}`);
    }
  });

  it("knows loopback addresses (127/8, ::1, localhost) from others", () => {
    for (const h of ["127.0.0.1", "127.255.0.9", "::1", "0:0:0:0:0:0:0:1", "LOCALHOST"]) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["10.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1", "128.0.0.1", "localhost.example"]) expect(isLoopbackHost(h), h).toBe(false);
  });

  it("answers only loopback Host names (DNS rebinding)", () => {
    const hosts = allowedHosts({ host: "127.0.0.1", port: 8470 });
    expect([...hosts].sort()).toEqual(["127.0.0.1:8470", "[::1]:8470", "localhost:8470"]);
  });
});
