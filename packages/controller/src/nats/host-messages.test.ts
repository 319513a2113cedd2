import { describe, expect, it } from "vitest";
import { HostQueues } from "./host-messages.ts";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("HostQueues", () => {
  it("runs one host's work one at a time in order, other hosts alongside, and a failure does not stop the queue", async () => {
    const queues = new HostQueues();
    const log: string[] = [];
    const step = (name: string, ms: number, fail = false) => async () => {
      log.push(`${name} start`);
      await tick(ms);
      log.push(`${name} end`);
      if (fail) throw new Error(name);
      return name;
    };
    const a1 = queues.run("a", step("a1", 30, true));
    const a2 = queues.run("a", step("a2", 1));
    const b1 = queues.run("b", step("b1", 1));
    await expect(a1).rejects.toThrow("a1");
    await expect(a2).resolves.toBe("a2");
    await expect(b1).resolves.toBe("b1");
    await queues.idle();
    expect(log.indexOf("a2 start")).toBeGreaterThan(log.indexOf("a1 end"));
    expect(log.indexOf("b1 end")).toBeLessThan(log.indexOf("a1 end"));
  });
});
