import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { UnsafeTokenError, assertSafePath, remoteCommand, shellQuote } from "./remote-command.ts";

/** What /bin/sh makes of a command line: its argv, one per line, via printf. */
function shArgv(line: string): string[] {
  const out = execFileSync("sh", ["-c", `set -- ${line}; for a in "$@"; do printf '%s\\0' "$a"; done`], { encoding: "utf8" });
  return out.split("\0").slice(0, -1);
}

describe("remote command quoting", () => {
  it("single-quotes every token so sh gives back exactly the argv", () => {
    const nasty = ["a b", "it's", "$(id)", "`id`", "x;rm -rf /", "\"q\"", "*", "~root", "a\\b", "'", "''", "", "--flag=$HOME", "é"];
    for (const t of nasty) expect(shArgv(shellQuote(t))).toEqual([t]);
    expect(shArgv(nasty.map(shellQuote).join(" "))).toEqual(nasty);
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });

  it("builds a command line from argv, program first", () => {
    expect(remoteCommand(["/opt/netfleet/node", "--version"])).toBe("'/opt/netfleet/node' '--version'");
    expect(remoteCommand(["sha256sum", "/opt/netfleet/agent.mjs"])).toBe("'sha256sum' '/opt/netfleet/agent.mjs'");
  });

  it("refuses control characters, odd programs and empty commands", () => {
    expect(() => shellQuote("a\nb")).toThrow(UnsafeTokenError);
    expect(() => shellQuote("a\u0000b")).toThrow(/control character/);
    expect(() => remoteCommand([])).toThrow(/empty/);
    expect(() => remoteCommand(["sh -c", "x"])).toThrow(/plain name or an absolute path/);
    expect(() => remoteCommand(["../x"])).toThrow(UnsafeTokenError);
  });

  it("accepts only plain absolute paths", () => {
    expect(assertSafePath("/etc/netfleet/agent.json")).toBe("/etc/netfleet/agent.json");
    for (const bad of ["etc/x", "/etc/../x", "/a b", "/a;b", "/a/./b", "/"]) expect(() => assertSafePath(bad)).toThrow(UnsafeTokenError);
  });
});
