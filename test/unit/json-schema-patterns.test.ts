import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { INTERFACE_NAME, iproute2Keyword, IPROUTE2_KEYWORDS, isIpv4, isUnicastMac, parseIpv4Cidr, parsePortRange } from "@netfleet/shared";
import { specialPurposeProblem, SPECIAL_PURPOSE_BLOCKS } from "../../packages/shared/src/inventory/check-addresses.ts";
import {
  CIDR_OR_ADDRESS_PATTERN,
  CIDR_PATTERN,
  interfaceNamePattern,
  IPV4_PATTERN,
  LINK_LOCAL_PATTERN,
  networkCidrPattern,
  PORT_RANGE_PATTERN,
  UNICAST_MAC_PATTERN,
} from "../../packages/shared/src/inventory/schema-patterns.ts";

// The JSON Schema's patterns stand in for code the loader runs (isIpv4,
// parseIpv4Cidr, parsePortRange, ...). Each must accept exactly what the
// code accepts: a stricter pattern would make editors flag good files, a
// looser one would let bad ones through. Compiled as JSON Schema tools do
// (ECMAScript, `u` flag); compared exhaustively where the space is small
// (every octet in every position, every prefix length, every port) and on
// seeded random inputs elsewhere.

const re = (pattern: string) => new RegExp(pattern, "u");
/** Inputs where pattern and code disagree, gathered per test and expected empty at its end. */
let disagreements: string[] = [];
function agree(input: string, pattern: boolean, code: boolean): void {
  if (pattern !== code) disagreements.push(`${JSON.stringify(input)}: pattern ${pattern}, code ${code}`);
}
const SEED = 1313;
const octets = Array.from({ length: 256 }, (_, i) => i);
const cidrOk = (s: string) => typeof parseIpv4Cidr(s) !== "string";
/** Addresses with one octet set to every value 0-255 (and some that are not octets), the others from `fill`. */
function addressesByOctet(fill: string): string[] {
  const out: string[] = [];
  for (let pos = 0; pos < 4; pos++) {
    for (const v of [...octets.map(String), "256", "300", "999", "00", "01", "010", "-1", "", "1a"]) {
      const parts = [fill, fill, fill, fill];
      parts[pos] = v;
      out.push(parts.join("."));
    }
  }
  return out;
}
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
const masked = (n: number, p: number) => (p === 0 ? 0 : (n & ((0xffffffff << (32 - p)) >>> 0)) >>> 0);

describe("JSON Schema patterns accept exactly what the loader's code accepts", () => {
  beforeEach(() => {
    disagreements = [];
  });
  afterEach(() => {
    expect(disagreements.slice(0, 20)).toEqual([]);
  });

  it("IPv4 address: every octet value in every position, odd forms, random text", () => {
    const ipv4 = re(IPV4_PATTERN);
    const inputs = [...addressesByOctet("0"), ...addressesByOctet("255"), "1.2.3", "1.2.3.4.5", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4/32", "0x1.2.3.4", "1..2.3", "１.2.3.4"];
    for (const s of inputs) agree(s, ipv4.test(s), isIpv4(s));
    fc.assert(fc.property(fc.stringMatching(/^[0-9.]{1,16}$/), (s) => ipv4.test(s) === isIpv4(s)), { seed: SEED, numRuns: 5000 });
  }, 60_000);

  it("CIDR: every prefix length (and /0N forms) against every octet value in every position, random addresses", () => {
    const cidr = re(CIDR_PATTERN);
    const either = re(CIDR_OR_ADDRESS_PATTERN);
    const addresses = [...addressesByOctet("0"), ...addressesByOctet("255")];
    const lens = [...Array.from({ length: 33 }, (_, p) => String(p)), "00", "08", "09", "33", "99", "100", "", "-1", "024"];
    let accepted = 0;
    for (const a of addresses) {
      for (const len of lens) {
        const s = `${a}/${len}`;
        agree(s, cidr.test(s), cidrOk(s));
        agree(s, either.test(s), cidrOk(s) || isIpv4(s));
        if (cidr.test(s)) accepted++;
      }
    }
    expect(accepted).toBeGreaterThan(1000); // the positive side is exercised too
    for (const a of addresses) agree(a, either.test(a), isIpv4(a));
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 32 }), fc.boolean(), (n, p, clean) => {
        const s = `${dotted(clean ? masked(n, p) : n)}/${p}`;
        return cidr.test(s) === cidrOk(s);
      }),
      { seed: SEED, numRuns: 10000 },
    );
  }, 60_000);

  it("VM network CIDR: no overlap with a special-purpose block, at every prefix length", () => {
    const net = re(networkCidrPattern(SPECIAL_PURPOSE_BLOCKS.map((b) => b.cidr)));
    const allowed = (s: string) => {
      const c = parseIpv4Cidr(s);
      return typeof c !== "string" && specialPurposeProblem(c) === undefined;
    };
    for (const first of octets) {
      for (const second of [0, 1, 127, 128, 253, 254, 255]) {
        for (let p = 0; p <= 32; p++) {
          for (const third of [0, 2]) {
            const s = `${dotted(masked(((first << 24) | (second << 16) | (third << 8)) >>> 0, p))}/${p}`;
            agree(s, net.test(s), allowed(s));
          }
        }
      }
    }
    expect(net.test("10.1.0.0/24")).toBe(true);
    expect(net.test("127.2.0.0/24")).toBe(false);
    expect(net.test("224.0.0.0/3")).toBe(false); // holds 224.0.0.0/4
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 32 }), (n, p) => {
        const s = `${dotted(masked(n, p))}/${p}`;
        return net.test(s) === allowed(s);
      }),
      { seed: SEED, numRuns: 10000 },
    );
  }, 60_000);

  it("allow `to` inside 169.254.0.0/16 (always denied) at every prefix length", () => {
    const linkLocal = re(LINK_LOCAL_PATTERN);
    const block = parseIpv4Cidr("169.254.0.0/16");
    if (typeof block === "string") throw new Error(block);
    for (const a of ["169.254.0.0", "169.254.169.254", "169.255.0.0", "169.253.255.255", "10.0.0.0", "169.0.0.0", "168.0.0.0"]) {
      for (let p = 0; p <= 32; p++) {
        const s = `${dotted(masked(ipv4Int(a), p))}/${p}`;
        const c = parseIpv4Cidr(s);
        if (typeof c === "string") continue;
        agree(s, linkLocal.test(s), c.first >= block.first && c.last <= block.last);
      }
      agree(a, linkLocal.test(a), a.startsWith("169.254."));
    }
  }, 60_000);

  it("port or range string: every port 0-70000, padded and spaced forms, random ranges", () => {
    const range = re(PORT_RANGE_PATTERN);
    // The pattern cannot see that a range ends before it starts; everything else must agree.
    const codeAccepts = (s: string) => {
      const r = parsePortRange(s);
      return typeof r !== "string" || r.includes("ends before it starts");
    };
    for (let p = 0; p <= 70000; p += p < 1000 || p > 65000 ? 1 : 7) {
      for (const s of [String(p), `0${p}`, `${p}-${p}`, ` ${p} `]) agree(s, range.test(s), codeAccepts(s));
    }
    for (const s of ["", "-", "1-", "-1", "1--2", "1-2-3", "a", "1 - 2", "000000", "00001", "1,2", "\t22\n"]) agree(s, range.test(s), codeAccepts(s));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99999 }), fc.integer({ min: 0, max: 99999 }), (a, b) => range.test(`${a}-${b}`) === codeAccepts(`${a}-${b}`)),
      { seed: SEED, numRuns: 10000 },
    );
  }, 60_000);

  it("unicast MAC: every first octet, either case, and malformed ones", () => {
    const mac = re(UNICAST_MAC_PATTERN);
    for (const o of octets) {
      for (const first of [o.toString(16).padStart(2, "0"), o.toString(16).padStart(2, "0").toUpperCase()]) {
        const s = `${first}:54:00:12:34:56`;
        agree(s, mac.test(s), isUnicastMac(s));
      }
    }
    for (const s of ["52:54:00:12:34", "52:54:00:12:34:56:78", "52-54-00-12-34-56", "5254.0012.3456", "g2:54:00:12:34:56", ""]) agree(s, mac.test(s), isUnicastMac(s));
  }, 60_000);

  it("interface names: no iproute2 keyword nor a prefix of one, nor lo or ovs-system where reserved", () => {
    const plain = re(interfaceNamePattern(IPROUTE2_KEYWORDS));
    const nic = re(interfaceNamePattern(IPROUTE2_KEYWORDS, ["lo", "ovs-system"]));
    const ok = (s: string) => INTERFACE_NAME.test(s) && iproute2Keyword(s) === undefined;
    const inputs = new Set<string>(["lo", "ovs-system", "eth0", "bond0", "br-uplink", "-x", ".x", "a".repeat(15), "a".repeat(16), "UP", "upx", "lo0", "ovs-system0"]);
    for (const k of IPROUTE2_KEYWORDS) {
      for (let i = 1; i <= k.length; i++) inputs.add(k.slice(0, i));
      inputs.add(`${k}0`);
      inputs.add(`${k}x`);
    }
    let refused = 0;
    for (const s of inputs) {
      agree(s, plain.test(s), ok(s));
      agree(s, nic.test(s), ok(s) && s !== "lo" && s !== "ovs-system");
      if (!ok(s)) refused++;
    }
    expect(refused).toBeGreaterThan(200);
    fc.assert(fc.property(fc.stringMatching(/^[a-z0-9_.-]{1,16}$/), (s) => plain.test(s) === ok(s)), { seed: SEED, numRuns: 10000 });
  }, 60_000);
});

function ipv4Int(a: string): number {
  return a.split(".").reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);
}
