import { describe, expect, it } from "vitest";
import { mainPid } from "./systemd.ts";

describe("mainPid (the pid systemd-notify --pid names)", () => {
  it("is $SYSTEMD_EXEC_PID, the process systemd started, when set: a supervised agent must not name itself", () => {
    expect(mainPid({ SYSTEMD_EXEC_PID: "4242" })).toBe(4242);
  });
  it("is our own pid without it, or when it is not a pid", () => {
    for (const v of [undefined, "", "1", "0", "-5", "12x", "3.5"]) expect(mainPid(v === undefined ? {} : { SYSTEMD_EXEC_PID: v })).toBe(process.pid);
  });
});
