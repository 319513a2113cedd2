/**
 * The `netfleet` line `netfleet-lab status` prints is pasted into a shell:
 * shellLine's words must come back as the same argv from a real `sh`
 * (spaces, quotes, `$`, globs, an empty word), and plain words stay unquoted.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { shellLine } from "./playground.ts";

describe("shellLine", () => {
  it("leaves plain words alone", () => {
    expect(shellLine(["ip", "netns", "exec", "nf-sw", "env", "NETFLEET_STATE_DIR=/run/netfleet-lab/nf/controller", "/usr/bin/node"])).toBe(
      "ip netns exec nf-sw env NETFLEET_STATE_DIR=/run/netfleet-lab/nf/controller /usr/bin/node",
    );
  });

  it("gives sh back the same words", () => {
    const words = ["/tmp/my lab/x", "it's", "$HOME", "*", "a\"b", "", "tab\there", "back\\slash"];
    const line = shellLine(words);
    // printf prints each argument sh split the line into, NUL-terminated.
    const out = execFileSync("sh", ["-c", `printf '%s\\0' ${line}`], { encoding: "utf8" });
    expect(out.split("\0").slice(0, -1)).toEqual(words);
  });
});
