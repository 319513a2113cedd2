import { describe, expect, it } from "vitest";
import { encodeMessage, generateSigningKeys, sealAssignment, signAssignment } from "@netfleet/shared";
import { hintedRevision, judgeDesired } from "./desired.ts";
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

  it("hintedRevision reads the revision of an envelope, and nothing from bytes that are not JSON or name none", () => {
    expect(hintedRevision(encodeMessage(signAssignment(assignment, 12, keys.privateKeyPem)))).toBe(12);
    expect(hintedRevision(new TextEncoder().encode("{not json"))).toBeUndefined();
    expect(hintedRevision(new Uint8Array([0xff, 0xfe]))).toBeUndefined();
    expect(hintedRevision(new TextEncoder().encode('{"revision":0}'))).toBeUndefined();
    expect(hintedRevision(new TextEncoder().encode('{"revision":"5"}'))).toBeUndefined();
  });
});
