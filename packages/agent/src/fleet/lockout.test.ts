import { describe, expect, it } from "vitest";
import { CONFIRM_ATTEMPT_MS, confirmAttemptMs } from "./lockout.ts";

describe("confirmAttemptMs: how long each confirmation attempt waits for the put's acknowledgement", () => {
  it("5 s first, then twice as long as the attempt before, up to 16 times the first", () => {
    const far = 10 * 60_000;
    expect(CONFIRM_ATTEMPT_MS).toBe(5000);
    expect([0, 1, 2, 3, 4, 5, 9].map((a) => confirmAttemptMs(a, far))).toEqual([5000, 10_000, 20_000, 40_000, 80_000, 80_000, 80_000]);
  });

  it("never beyond what is left of the deadline (a short deadline, the last attempt), never below 0", () => {
    expect(confirmAttemptMs(0, 1500)).toBe(1500);
    expect(confirmAttemptMs(2, 7250)).toBe(7250);
    expect(confirmAttemptMs(1, 0)).toBe(0);
    expect(confirmAttemptMs(0, -5)).toBe(0);
  });
});
