import { createPrivateKey, createPublicKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { sealAssignment } from "../assignment.ts";
import { DecodeError } from "../errors.ts";
import { Heartbeat, decodeMessage } from "./messages.ts";
import { generateBoxKeys, open, seal } from "./sealed-box.ts";
import { AssignmentRejectedError, decodeSignedAssignment, generateSigningKeys, signAssignment, verifySignedAssignment } from "./signing.ts";
import { agentReplySubject, desiredBucket, directGetSubject, enrollSubject, hostOfSubject, kvSubject } from "./subjects.ts";

const doc = (host: string, v: string) =>
  sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "lab", host, role: "vmhost", resources: [{ kind: "sysctl", name: "net.ipv4.ip_forward", value: v }] });
const keys = generateSigningKeys();

function rejection(fn: () => unknown): AssignmentRejectedError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AssignmentRejectedError) return err;
    throw err;
  }
  throw new Error("not rejected");
}

describe("subjects", () => {
  it("names buckets, keys and subjects, and refuses names that could be wildcards", () => {
    expect(desiredBucket("lab")).toBe("nf_lab_desired");
    expect(directGetSubject("nf_lab_desired", "hv1")).toBe("$JS.API.DIRECT.GET.KV_nf_lab_desired.$KV.nf_lab_desired.hv1");
    expect(kvSubject("nf_lab_desired", "hv1")).toBe("$KV.nf_lab_desired.hv1");
    expect(enrollSubject("lab", "*")).toBe("nf.lab.enroll.*");
    expect(() => enrollSubject("lab", ">")).toThrow(/not a DNS label/);
    expect(() => desiredBucket("a.b")).toThrow(/not a DNS label/);
    expect(hostOfSubject("nf.lab.report.hv1")).toBe("hv1");
    expect(hostOfSubject("nf.lab.report.hv1.x")).toBeUndefined();
  });

  it("an agent's reply subject names one host and one request; the host is never a wildcard, the id only `*` (the permission)", () => {
    expect(agentReplySubject("lab", "hv1", "a1B2c3D4e5F6g7H8i9J0kL")).toBe("nf.lab.reply.hv1.a1B2c3D4e5F6g7H8i9J0kL");
    expect(agentReplySubject("lab", "hv1", "*")).toBe("nf.lab.reply.hv1.*");
    expect(() => agentReplySubject("lab", "*", "x1")).toThrow(/not a DNS label/);
    for (const id of [">", "a.b", "", "a b", "x".repeat(65)]) expect(() => agentReplySubject("lab", "hv1", id), id).toThrow(/not a token of letters and digits/);
  });
});

describe("signed assignments", () => {
  const signed = signAssignment(doc("hv1", "1"), 5, keys.privateKeyPem);
  const envelope = () => decodeSignedAssignment("t", JSON.stringify(signed));

  it("signs a plan's observed-state hash with the rest (1.2): it verifies as signed, an altered or removed one does not, a malformed one is refused at decode", () => {
    const observed = "ab".repeat(32);
    const planned = signAssignment(doc("hv1", "1"), 6, keys.privateKeyPem, undefined, { plan: { observed } });
    const verified = verifySignedAssignment(decodeSignedAssignment("t", JSON.stringify(planned)), keys.publicKeyPem, 5, { site: "lab", host: "hv1" });
    expect(verified.plan).toEqual({ observed });
    expect("plan" in signed).toBe(false);
    const altered = { ...planned, plan: { observed: "cd".repeat(32) } };
    expect(rejection(() => verifySignedAssignment(decodeSignedAssignment("t", JSON.stringify(altered)), keys.publicKeyPem, 5)).reason).toBe("bad-signature");
    const { plan: _removed, ...stripped } = planned;
    expect(rejection(() => verifySignedAssignment(decodeSignedAssignment("t", JSON.stringify(stripped)), keys.publicKeyPem, 5)).reason).toBe("bad-signature");
    expect(() => decodeSignedAssignment("t", JSON.stringify({ ...planned, plan: { observed: "not-a-hash" } }))).toThrow(DecodeError);
  });

  it("refuses an envelope whose assignment is nested too deeply to read back, as a DecodeError (not a RangeError)", () => {
    const deep = `{"assignment":${"[".repeat(20_000)}1${"]".repeat(20_000)},"revision":6,"signedAt":"${signed.signedAt}","signature":"${signed.signature}","keyId":"${signed.keyId}"}`;
    expect(() => decodeSignedAssignment("kv nf_lab_desired/hv1@9", deep)).toThrow(DecodeError);
    expect(() => decodeSignedAssignment("kv nf_lab_desired/hv1@9", deep)).toThrow(/kv nf_lab_desired\/hv1@9: assignment: not an assignment: nested too deeply/);
    // The same document at an ordinary depth still decodes.
    expect(envelope().assignment.hash).toBe(signed.assignment.hash);
  });

  it("verifies a signed newer revision for this host", () => {
    expect(verifySignedAssignment(envelope(), keys.publicKeyPem, 4, { site: "lab", host: "hv1" })).toEqual(signed);
  });

  it("gives each refusal its own reason and message", () => {
    const { signature: _s, ...unsigned } = signed;
    expect(rejection(() => verifySignedAssignment(decodeSignedAssignment("t", JSON.stringify(unsigned)), keys.publicKeyPem, 0))).toMatchObject({ reason: "unsigned", message: "revision 5: assignment is not signed" });
    expect(rejection(() => verifySignedAssignment(envelope(), generateSigningKeys().publicKeyPem, 0)).reason).toBe("unknown-key");
    const bumped = decodeSignedAssignment("t", JSON.stringify({ ...signed, revision: 6 }));
    expect(rejection(() => verifySignedAssignment(bumped, keys.publicKeyPem, 0)).message).toMatch(/signature does not verify/);
    expect(rejection(() => verifySignedAssignment(envelope(), keys.publicKeyPem, 0, { site: "lab", host: "hv2" })).reason).toBe("wrong-host");
    expect(rejection(() => verifySignedAssignment(envelope(), keys.publicKeyPem, 5)).message).toBe("revision 5 is not newer than the current revision 5");
  });

  it("decodes only envelopes whose assignment is valid and untampered", () => {
    expect(() => decodeSignedAssignment("t", JSON.stringify(doc("hv1", "1")))).toThrow(DecodeError);
    expect(() => decodeSignedAssignment("t", JSON.stringify({ ...signed, assignment: { ...signed.assignment, host: "hv2" } }))).toThrow(/content hash/);
    expect(() => decodeSignedAssignment("t", "{")).toThrow(/not JSON/);
  });
});

describe("messages and sealed boxes", () => {
  it("decodes messages strictly", () => {
    const hb = { kind: "heartbeat", site: "lab", host: "hv1", agentVersion: "1", revision: 0, hash: null, uptimeS: 1, at: new Date().toISOString() };
    expect(decodeMessage(Heartbeat, "hb", JSON.stringify(hb))).toEqual(hb);
    expect(() => decodeMessage(Heartbeat, "hb", JSON.stringify({ ...hb, extra: 1 }))).toThrow(DecodeError);
    expect(() => decodeMessage(Heartbeat, "hb", new Uint8Array([0xff]))).toThrow(/not JSON/);
  });

  it("opens a box only with the recipient key and the same context", () => {
    const recipient = generateBoxKeys();
    const box = seal(recipient.publicKey, "secret", "lab/hv1");
    expect(open(recipient, box, "lab/hv1")).toBe("secret");
    expect(() => open(recipient, box, "lab/hv2")).toThrow();
    expect(() => open(generateBoxKeys(), box, "lab/hv1")).toThrow();
  });

  it("writes public keys as node:crypto's SPKI DER, and opens with keys read back from their file (PEM only)", () => {
    for (let i = 0; i < 20; i++) {
      const keys = generateBoxKeys();
      const fromPem = createPublicKey(createPrivateKey(keys.privateKeyPem)).export({ type: "spki", format: "der" }).toString("base64");
      expect(keys.publicKey).toBe(fromPem);
      const box = seal(keys.publicKey, `secret ${i}`, "lab/hv1");
      // The ephemeral key too: node:crypto parses it as X25519 and writes back the same bytes.
      const eph = createPublicKey({ key: Buffer.from(box.ephemeralKey, "base64"), format: "der", type: "spki" });
      expect(eph.asymmetricKeyType).toBe("x25519");
      expect(eph.export({ type: "spki", format: "der" }).toString("base64")).toBe(box.ephemeralKey);
      // A copy (as parsed from enroll-key.json) has no remembered key: the PEM is parsed.
      expect(open({ ...keys }, box, "lab/hv1")).toBe(`secret ${i}`);
      expect(open(keys, box, "lab/hv1")).toBe(`secret ${i}`);
    }
  });
});

describe("join tokens", () => {
  it("splits into the enrollment password and the approval token, and refuses anything else", async () => {
    const { newJoinToken, parseJoinToken } = await import("./join-token.ts");
    const t = newJoinToken();
    expect(parseJoinToken(t.token)).toEqual(t);
    expect(t.token.startsWith(`${t.enrollPassword}.`)).toBe(true);
    expect(() => parseJoinToken("short")).toThrow(/<id>\.<secret>/);
    expect(() => parseJoinToken("abcdefgh.sec ret-0123456789abc")).toThrow();
  });

  it("never begins with a dash, which a command line would read as an option (1 in 64 random ids do)", async () => {
    const { newJoinToken, parseJoinToken } = await import("./join-token.ts");
    const tokens = Array.from({ length: 2000 }, () => newJoinToken());
    expect(tokens.filter((t) => t.token.startsWith("-"))).toEqual([]);
    for (const t of tokens.slice(0, 50)) expect(parseJoinToken(t.token)).toEqual(t);
  });
});
