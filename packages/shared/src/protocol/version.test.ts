import { createPrivateKey, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodeAssignment, sealAssignment } from "../assignment.ts";
import { canonicalJson } from "../canonical.ts";
import { DecodeError } from "../errors.ts";
import { Heartbeat, Report, decodeMessage, encodeMessage } from "./messages.ts";
import { decodeSignedAssignment, generateSigningKeys, signAssignment, signingKeyId, verifySignedAssignment } from "./signing.ts";
import { NETFLEET_RELEASE, PROTOCOL_UNDERSTOOD, PROTOCOL_VERSION, ProtocolVersionError, parseProtocolVersion } from "./version.ts";

const ours = parseProtocolVersion(PROTOCOL_VERSION)!;
/** A later minor of our major: a peer that may send fields we do not know. */
const NEWER = `${ours.major}.${ours.minor + 1}`;
const OTHER_MAJOR = `${ours.major + 1}.0`;

const hb: Heartbeat = { kind: "heartbeat", site: "lab", host: "hv1", agentVersion: "0.1.0", revision: 3, hash: null, uptimeS: 5, at: "2026-01-01T00:00:00.000Z" };
const bytes = (v: unknown) => JSON.stringify(v);

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("protocol version on messages", () => {
  it("is stamped by the encoder and checked and dropped by the decoder", () => {
    const sent = JSON.parse(new TextDecoder().decode(encodeMessage(hb)));
    expect(sent.protocol).toBe(PROTOCOL_VERSION);
    expect(decodeMessage(Heartbeat, "hb", encodeMessage(hb))).toEqual(hb);
  });

  it("reads a message without a version as 1.0, as strictly as before", () => {
    expect(decodeMessage(Heartbeat, "hb", bytes(hb))).toEqual(hb);
    expect(() => decodeMessage(Heartbeat, "hb", bytes({ ...hb, extra: 1 }))).toThrow(/hb: \(document\): Unrecognized key: "extra"/);
  });

  it("refuses a field it does not know from a peer of its own minor or older", () => {
    expect(() => decodeMessage(Heartbeat, "hb", bytes({ protocol: PROTOCOL_VERSION, ...hb, extra: 1 }))).toThrow(DecodeError);
  });

  it("drops the fields a newer minor added, at any depth, and keeps the known ones strict", () => {
    const report: Report = { kind: "report", site: "lab", host: "hv1", revision: 2, hash: null, rolledBack: false, summary: { ok: 1, changed: 0, failed: 0, pending: 0 }, results: [{ id: "sysctl[x]", result: true }], at: hb.at };
    const newer = { protocol: NEWER, ...report, durationMs: 12, summary: { ...report.summary, skipped: 0 }, results: [{ id: "sysctl[x]", result: true, ms: 3 }] };
    expect(decodeMessage(Report, "report", bytes(newer))).toEqual(report);
    expect(() => decodeMessage(Report, "report", bytes({ ...newer, revision: -1 }))).toThrow(/report: revision:/);
  });

  it("refuses another major whole, naming the message kind, the version received and the versions understood", () => {
    const err = thrown(() => decodeMessage(Heartbeat, "nf.lab.heartbeat.hv1", bytes({ protocol: OTHER_MAJOR, ...hb }))) as ProtocolVersionError;
    expect(err).toBeInstanceOf(ProtocolVersionError);
    expect(err).toBeInstanceOf(DecodeError);
    expect(err).toMatchObject({ kind: "heartbeat", received: JSON.stringify(OTHER_MAJOR), understood: PROTOCOL_UNDERSTOOD });
    expect(err.message).toBe(`nf.lab.heartbeat.hv1: protocol: heartbeat message speaks protocol "${OTHER_MAJOR}"; this peer understands ${PROTOCOL_UNDERSTOOD}`);
  });

  it("refuses a version that is not MAJOR.MINOR", () => {
    for (const bad of ["1", "1.0.0", "01.0", "v1.0", "", 1, null, ["1.0"]]) {
      expect(thrown(() => decodeMessage(Heartbeat, "hb", bytes({ protocol: bad, ...hb })))).toBeInstanceOf(ProtocolVersionError);
    }
    // Nested far deeper than JSON.stringify can walk: refused as a version, without walking it.
    const deep = `{"protocol":${"[".repeat(20000)}${"]".repeat(20000)}}`;
    expect(thrown(() => decodeMessage(Heartbeat, "hb", deep))).toMatchObject({ name: "ProtocolVersionError", received: "an array" });
    expect(thrown(() => decodeSignedAssignment("kv", deep))).toMatchObject({ name: "ProtocolVersionError", received: "an array" });
  });
});

describe("protocol version on signed assignments", () => {
  const keys = generateSigningKeys();
  const doc = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: "lab", host: "hv1", role: "vmhost", resources: [{ kind: "sysctl", name: "net.ipv4.ip_forward", value: "1" }] });

  /** An envelope a newer controller signed: a field in the envelope and one in the assignment (hashed) that we do not know. */
  function newerEnvelope(): Record<string, unknown> {
    const { hash: _hash, ...body } = { ...doc, placement: "rack-4" };
    const assignment = sealAssignment(body as Omit<typeof doc, "hash">);
    const envelope = { protocol: NEWER, assignment, revision: 7, signedAt: hb.at, keyId: signingKeyId(keys.publicKeyPem), issuedBy: "controller 9.9" };
    return { ...envelope, signature: sign(null, Buffer.from(canonicalJson(envelope)), createPrivateKey(keys.privateKeyPem)).toString("base64") };
  }

  it("signs the envelope with its version and the controller's release (1.1)", () => {
    const signed = signAssignment(doc, 2, keys.privateKeyPem);
    expect(signed).toMatchObject({ protocol: PROTOCOL_VERSION, release: NETFLEET_RELEASE });
    expect(verifySignedAssignment(decodeSignedAssignment("t", encodeMessage(signed)), keys.publicKeyPem, 1).revision).toBe(2);
  });

  it("verifies a newer minor's envelope over the fields it does not know, and keeps them for passing it on", () => {
    const envelope = decodeSignedAssignment("kv", bytes(newerEnvelope()));
    const verified = verifySignedAssignment(envelope, keys.publicKeyPem, 6, { site: "lab", host: "hv1" });
    expect(verified.assignment.resources).toEqual(doc.resources);
    const kept = decodeSignedAssignment("checkpoint", JSON.stringify(verified));
    expect(verifySignedAssignment(kept, keys.publicKeyPem, 6).revision).toBe(7);
  });

  it("still refuses a newer envelope altered in a field it does not know", () => {
    const altered = { ...newerEnvelope(), issuedBy: "mallory" };
    expect(() => verifySignedAssignment(decodeSignedAssignment("kv", bytes(altered)), keys.publicKeyPem, 6)).toThrow(/signature does not verify/);
  });

  it("refuses an envelope of another major before reading it", () => {
    const err = thrown(() => decodeSignedAssignment("kv nf_lab_desired/hv1", bytes({ ...newerEnvelope(), protocol: OTHER_MAJOR })));
    expect(err).toMatchObject({ name: "ProtocolVersionError", kind: "assignment envelope", received: JSON.stringify(OTHER_MAJOR) });
  });

  it("refuses an address with an octet over 255 at the boundary", () => {
    const bad = sealAssignment({ ...doc, resources: [{ kind: "interface-address", name: "eth1", addresses: ["999.1.1.1/24"] }] });
    expect(() => decodeAssignment("file", bytes(bad))).toThrow(/resources\.0\.addresses\.0: must be an IPv4 address/);
    const good = sealAssignment({ ...doc, resources: [{ kind: "interface-address", name: "eth1", addresses: ["10.1.1.1/24"] }] });
    expect(decodeAssignment("file", bytes(good))).toEqual(good);
  });
});
