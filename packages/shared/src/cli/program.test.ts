import { describe, expect, it } from "vitest";
import { createProgram, isBug, jsonErrorLine, runProgram, usageError, wantsJson, withExitCode } from "./program.ts";

/** A program like netfleet's, writing into arrays. */
function program() {
  const out: string[] = [];
  const err: string[] = [];
  const p = createProgram({ name: "netfleet", description: "test", version: "1.0.0", io: { out: (t) => out.push(t), err: (t) => err.push(t) } });
  p.command("status")
    .option("--json", "json")
    .option("--limit <x>", "limit")
    .action(withExitCode((o: { limit?: string }, cmd) => (o.limit === "bad" ? usageError(cmd, "--limit bad: matches no host") : 0)));
  return { p, out, err };
}

describe("--json errors are JSON lines on stderr", () => {
  it("wantsJson: a --json before any --", () => {
    expect(wantsJson(["status", "--json"])).toBe(true);
    expect(wantsJson(["status"])).toBe(false);
    expect(wantsJson(["status", "--", "--json"])).toBe(false);
  });

  it("jsonErrorLine: one line, error or warning, terminal controls escaped", () => {
    expect(jsonErrorLine("netfleet status: cannot use NATS at nats://127.0.0.1:4222\n")).toBe('{"error":"netfleet status: cannot use NATS at nats://127.0.0.1:4222"}\n');
    expect(jsonErrorLine("netfleet audit: warning: unused --batch")).toBe('{"warning":"netfleet audit: warning: unused --batch"}\n');
    expect(jsonErrorLine("netfleet x: a\u2028b\u001b[2J")).toBe('{"error":"netfleet x: a\\u2028b\\u001b[2J"}\n');
  });

  it("commander's usage errors and ours: text without --json, a JSON line with it (exit 64 both)", async () => {
    const text = program();
    expect(await runProgram(text.p, ["status", "--nope"])).toBe(64);
    expect(text.err.join("")).toMatch(/^netfleet: unknown option '--nope'/);
    const json = program();
    expect(await runProgram(json.p, ["status", "--nope", "--json"])).toBe(64);
    expect(json.err.map((l) => JSON.parse(l) as unknown)).toEqual([{ error: expect.stringMatching(/^netfleet: unknown option '--nope'/) }]);
    const ours = program();
    expect(await runProgram(ours.p, ["status", "--limit", "bad", "--json"])).toBe(64);
    expect(ours.err).toEqual(['{"error":"netfleet status: --limit bad: matches no host"}\n']);
    expect(ours.out).toEqual([]);
  });

  it("isBug: JavaScript's own errors and Node's ERR_* are bugs (stack kept); ours and errno errors are not", () => {
    expect(isBug(new TypeError("x"))).toBe(true);
    expect(isBug(Object.assign(new Error("x"), { code: "ERR_ASSERTION" }))).toBe(true);
    expect(isBug("a string")).toBe(true);
    expect(isBug(new Error("no controller state"))).toBe(false);
    expect(isBug(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe(false);
  });
});
