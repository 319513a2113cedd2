import { describe, expect, it } from "vitest";
import { NATS_GO_RUNTIME, natsServerEnv } from "./server.ts";

describe("nats-server's Go runtime environment", () => {
  it("sets GOGC and turns stack shrinking off, keeping the rest of serve's environment", () => {
    const base = { PATH: "/usr/bin", HOME: "/root" };
    const env = natsServerEnv(base, NATS_GO_RUNTIME);
    expect(env).toEqual({ PATH: "/usr/bin", HOME: "/root", GOGC: "400", GODEBUG: "gcshrinkstackoff=1" });
    expect(base).toEqual({ PATH: "/usr/bin", HOME: "/root" });
  });

  it("keeps an operator's GOGC and gcshrinkstackoff, and appends ours to other GODEBUG settings", () => {
    expect(natsServerEnv({ GOGC: "150", GODEBUG: "gcshrinkstackoff=0" }, NATS_GO_RUNTIME)).toEqual({ GOGC: "150", GODEBUG: "gcshrinkstackoff=0" });
    expect(natsServerEnv({ GODEBUG: "madvdontneed=1," }, NATS_GO_RUNTIME).GODEBUG).toBe("madvdontneed=1,gcshrinkstackoff=1");
  });

  it("leaves GODEBUG alone when stacks may shrink", () => {
    expect(natsServerEnv({}, { gogc: 100, shrinkStacks: true })).toEqual({ GOGC: "100" });
  });
});
