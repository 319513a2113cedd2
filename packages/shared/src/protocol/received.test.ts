import { createPrivateKey, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { HostAssignment, sealAssignment } from "../assignment.ts";
import { canonicalJson, sha256Hex } from "../canonical.ts";
import { CheckRequest, decodeMessage, encodeMessage } from "./messages.ts";
import { decodeSignedAssignment, generateSigningKeys, signingKeyId, verifySignedAssignment } from "./signing.ts";
import { PROTOCOL_VERSION, parseProtocolVersion } from "./version.ts";

const ours = parseProtocolVersion(PROTOCOL_VERSION)!;
const NEWER = `${ours.major}.${ours.minor + 1}`;
const keys = generateSigningKeys();
const at = "2026-01-01T00:00:00.000Z";

/** The document as this code builds it (schema order), with one libvirt network and its port groups. */
const doc: HostAssignment = sealAssignment({
  apiVersion: "netfleet.dev/v1",
  kind: "HostAssignment",
  site: "lab",
  host: "hv1",
  role: "vmhost",
  resources: [
    {
      kind: "libvirt-network",
      name: "vmnet",
      bridge: "br-vm",
      portgroups: [
        { name: "default", default: true },
        { name: "tenant-a", default: false },
      ],
    },
  ],
});

/** An envelope signed over `assignment` as given (its own key order, its own fields), the hash computed over it too. */
function signedAs(protocol: string, assignment: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { hash: _hash, ...body } = assignment;
  const sealed = { ...body, hash: sha256Hex(canonicalJson(body)) };
  const envelope = { protocol, assignment: sealed, revision: 7, signedAt: at, keyId: signingKeyId(keys.publicKeyPem), ...extra };
  return { ...envelope, signature: sign(null, Buffer.from(canonicalJson(envelope)), createPrivateKey(keys.privateKeyPem)).toString("base64") };
}

/** `value` with the keys of every object in reverse order (same content, another order on the wire). */
function reversed(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversed);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reversed(v)]));
  return value;
}

describe("a decoded assignment is zod's checked output; the envelope as received stays for the signature", () => {
  it("leaves out a field a newer minor added inside a resource, and still verifies hash and signature", () => {
    const network = doc.resources[0]!;
    const withHint = { ...network, portgroups: [{ name: "default", default: true, vlanHint: 12 }, { name: "tenant-a", default: false }] };
    const received = signedAs(NEWER, { ...doc, resources: [withHint] }, { issuedBy: "controller 9.9" });
    const verified = verifySignedAssignment(decodeSignedAssignment("kv", JSON.stringify(received)), keys.publicKeyPem, 6, { site: "lab", host: "hv1" });
    expect(verified.assignment.resources).toEqual(doc.resources);
    expect(JSON.stringify(verified.assignment.resources)).toBe(JSON.stringify(doc.resources));
    expect(verified).not.toHaveProperty("issuedBy");
    // Kept (the checkpoint) and passed on (a check request) as received: still the newer fields, still verifying.
    expect(JSON.parse(JSON.stringify(verified))).toEqual(received);
    const kept = decodeSignedAssignment("checkpoint", JSON.stringify(verified));
    expect(verifySignedAssignment(kept, keys.publicKeyPem, 6).assignment.resources).toEqual(doc.resources);
    const request = decodeMessage(CheckRequest, "check", encodeMessage({ kind: "check", site: "lab", host: "hv1", envelope: verified }));
    expect(request.envelope).toEqual(received);
  });

  it("gives the schema's key order for a 1.1 envelope whose keys came in another order, and still verifies hash and signature", () => {
    const received = reversed(signedAs(PROTOCOL_VERSION, reversed(doc) as Record<string, unknown>)) as Record<string, unknown>;
    expect(Object.keys(received.assignment as object)[0]).toBe("hash");
    const verified = verifySignedAssignment(decodeSignedAssignment("kv", JSON.stringify(received)), keys.publicKeyPem, 6, { site: "lab", host: "hv1" });
    expect(JSON.stringify(verified.assignment)).toBe(JSON.stringify(HostAssignment.parse(doc)));
    const network = verified.assignment.resources[0]!;
    expect(network.kind === "libvirt-network" && Object.keys(network.portgroups[0]!)).toEqual(["name", "default"]);
    expect(verified.assignment.hash).toBe(doc.hash);
    expect(JSON.stringify(verified)).toBe(JSON.stringify(received));
  });

  it("checks the signature over the envelope as received: a copy altered in what the signature covers is refused", () => {
    const received = signedAs(NEWER, { ...doc }, { issuedBy: "controller 9.9" });
    const decoded = decodeSignedAssignment("kv", JSON.stringify(received));
    expect(() => verifySignedAssignment({ ...decoded, revision: 8 }, keys.publicKeyPem, 6)).toThrow(/signature does not verify/);
  });
});
