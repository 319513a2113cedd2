import { describe, expect, it } from "vitest";
import { bitsOf, formatBits, formatLimit, parseBits } from "./bandwidth.ts";

describe("parseBits", () => {
  it("reads tc(8)'s 1000-based bit units, case-insensitive, and bare numbers", () => {
    expect(parseBits("50Mbit")).toBe(50_000_000);
    expect(parseBits("50mbit")).toBe(50_000_000);
    expect(parseBits("1Gbit")).toBe(1_000_000_000);
    expect(parseBits("500kbit")).toBe(500_000);
    expect(parseBits("1.5Gbit")).toBe(1_500_000_000);
    expect(parseBits("1.1Mbit")).toBe(1_100_000);
    expect(parseBits("1Tbit")).toBe(1e12);
    expect(parseBits("8000bit")).toBe(8000);
    expect(parseBits("8000")).toBe(8000);
    expect(parseBits(12000, "burst")).toBe(12000);
    expect(parseBits("10 Mbit")).toBe(10_000_000);
    expect(parseBits(" 10Mbit")).toMatch(/^must be a rate/);
  });

  it("refuses 0, byte units, fractions of a bit, unknown units and values above 1 Tbit, with a message", () => {
    expect(parseBits("0Mbit")).toBe("a rate of 0 passes nothing; leave the direction out for no limit");
    expect(parseBits(0, "burst")).toBe("a burst of 0 passes nothing");
    expect(parseBits("10mbps")).toBe('"10mbps" is in bytes; write bits (kbit, Mbit, Gbit: 8 Mbit/s is 1 MB/s)');
    expect(parseBits("1mb", "burst")).toBe('"1mb" is in bytes; write bits (kbit, Mbit: 8 Mbit is 1 MB)');
    expect(parseBits("1.5bit")).toBe('"1.5bit" is not a whole number of bits per second');
    expect(parseBits("1.0000001Mbit")).toBe('"1.0000001Mbit" is not a whole number of bits per second');
    expect(parseBits("10Xbit")).toBe('unknown unit "Xbit": must be a rate in bit/s: a number with kbit, Mbit, Gbit or Tbit (1000-based, as tc(8)), e.g. 50Mbit, 500kbit, 1.5Gbit');
    expect(parseBits("2Tbit")).toBe('"2Tbit" is above 1Tbit');
    expect(parseBits("-5Mbit")).toMatch(/^must be a rate in bit\/s/);
    expect(parseBits("fast")).toMatch(/^must be a rate in bit\/s/);
    expect(parseBits(1.5)).toBe('"1.5" is not a whole number of bits per second');
    expect(() => bitsOf("0")).toThrow(RangeError);
  });

  it("formatBits writes the largest whole unit, which parseBits reads back", () => {
    for (const [n, text] of [[50_000_000, "50Mbit"], [1_500_000, "1500kbit"], [1234, "1234bit"], [1e9, "1Gbit"], [12_000, "12kbit"]] as const) {
      expect(formatBits(n)).toBe(text);
      expect(parseBits(text)).toBe(n);
    }
    expect(formatLimit({ rate: 50_000_000, burst: 1_000_000 })).toBe("50Mbit/s burst 1Mbit");
  });
});
