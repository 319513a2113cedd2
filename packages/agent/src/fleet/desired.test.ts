import { describe, expect, it } from "vitest";
import { encodeMessage, generateSigningKeys, sealAssignment, signAssignment } from "@netfleet/shared";
import { judgeDesired, readHint, storedNumber } from "./desired.ts";
import type { StoredEntry } from "./kv.ts";

const keys = generateSigningKeys();
const where = { site: "s1", host: "kvm1" };
const assignment = sealAssignment({
  apiVersion: "netfleet.dev/v1",
  kind: "HostAssignment",
  site: "s1",
  host: "kvm1",
  role: "vmhost",
  resources: [{ kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" }],
});

/** A stored entry of `bytes`, with and without the JSON a reader (readDesired) parsed already. */
function both(bytes: Uint8Array): [StoredEntry, StoredEntry] {
  const plain: StoredEntry = { data: bytes, seq: 7, operation: "PUT" };
  return [plain, { ...plain, json: { value: JSON.parse(new TextDecoder().decode(bytes)) } }];
}

describe("judgeDesired from the bytes or from StoredEntry.json (readDesired parses the value once)", () => {
  it("a signed envelope for this host is applied either way", () => {
    const bytes = encodeMessage(signAssignment(assignment, 3, keys.privateKeyPem));
    const verdicts = both(bytes).map((s) => judgeDesired(s, {}, keys.publicKeyPem, where));
    for (const v of verdicts) {
      expect(v.action).toBe("apply");
      if (v.action === "apply") expect([v.envelope.revision, v.envelope.assignment.hash]).toEqual([3, assignment.hash]);
    }
  });

  it("a value altered after signing is refused either way, with the same reason", () => {
    const envelope = signAssignment(assignment, 3, keys.privateKeyPem);
    const altered = encodeMessage({ ...envelope, revision: 4 });
    const verdicts = both(altered).map((s) => judgeDesired(s, {}, keys.publicKeyPem, where));
    expect(verdicts.map((v) => (v.action === "reject" ? v.reason : v.action))).toEqual(["bad-signature", "bad-signature"]);
  });

  it("another host's envelope is refused either way", () => {
    const other = sealAssignment({ ...assignment, host: "kvm2" });
    const bytes = encodeMessage(signAssignment(other, 3, keys.privateKeyPem));
    const verdicts = both(bytes).map((s) => judgeDesired(s, {}, keys.publicKeyPem, where));
    expect(verdicts.map((v) => (v.action === "reject" ? v.reason : v.action))).toEqual(["wrong-host", "wrong-host"]);
  });

  it("readHint reads the JSON and revision of an envelope, and no revision from bytes that are not JSON or name none", () => {
    const hint = readHint(encodeMessage(signAssignment(assignment, 12, keys.privateKeyPem)));
    expect(hint.revision).toBe(12);
    expect(hint.json?.value).toMatchObject({ revision: 12, assignment: { host: "kvm1" } });
    expect(readHint(new TextEncoder().encode("{not json"))).toEqual({});
    expect(readHint(new Uint8Array([0xff, 0xfe]))).toEqual({});
    expect(readHint(new TextEncoder().encode('{"revision":0}'))).toEqual({ json: { value: { revision: 0 } } });
    expect(readHint(new TextEncoder().encode('{"revision":"5"}')).revision).toBeUndefined();
  });

  it("storedNumber takes a positive decimal header value and nothing else", () => {
    expect(storedNumber("1")).toBe(1);
    expect(storedNumber("9007199254740991")).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of [undefined, "", "0", "-1", "01", "1e3", " 7", "7 ", "0x10", "9007199254740993", "12345678901234567"]) expect(storedNumber(bad), String(bad)).toBeUndefined();
  });
});
