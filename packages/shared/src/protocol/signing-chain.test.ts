import { describe, expect, it } from "vitest";
import { sealAssignment } from "../assignment.ts";
import {
  AssignmentRejectedError,
  acceptedKeyIds,
  decodeSignedAssignment,
  decodeSigningChain,
  followChain,
  generateSigningKeys,
  signAssignment,
  signKeyAnnouncement,
  trustPinned,
  verifySignedAssignment,
  type KeyAnnouncement,
  type SigningChain,
  type SigningKeys,
} from "./signing.ts";

const SITE = "lab";
const T0 = Date.parse("2026-01-01T00:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();

function rotate(chain: KeyAnnouncement[], from: SigningKeys, to: SigningKeys, notAfter: number): KeyAnnouncement {
  return signKeyAnnouncement({ site: SITE, seq: chain.length + 1, next: to, previousKeyId: from.keyId, previousNotAfter: iso(notAfter) }, from.privateKeyPem, iso(T0));
}

function retire(chain: KeyAnnouncement[], current: SigningKeys, retired: string): KeyAnnouncement {
  return signKeyAnnouncement({ site: SITE, seq: chain.length + 1, next: current, previousKeyId: retired, previousNotAfter: iso(T0) }, current.privateKeyPem, iso(T0));
}

/** Through the wire: encoded and decoded as an agent reads it. */
function wire(links: KeyAnnouncement[]): SigningChain {
  return decodeSigningChain("test", JSON.stringify({ kind: "signing-chain", site: SITE, links }));
}

const assignment = sealAssignment({ apiVersion: "netfleet.dev/v1", kind: "HostAssignment", site: SITE, host: "h1", role: "vmhost", resources: [] });
const envelope = (keys: SigningKeys, revision: number) => decodeSignedAssignment("test", JSON.stringify(signAssignment(assignment, revision, keys.privateKeyPem)));
const reason = (f: () => unknown) => {
  try {
    f();
    return "accepted";
  } catch (err) {
    return err instanceof AssignmentRejectedError ? err.reason : String(err);
  }
};

describe("signing-key chain", () => {
  const a = generateSigningKeys();
  const b = generateSigningKeys();
  const c = generateSigningKeys();

  it("a rotation makes the new key active and keeps the old one until its notAfter; a retirement drops it at once", () => {
    const links: KeyAnnouncement[] = [];
    links.push(rotate(links, a, b, T0 + 3600_000));
    const r1 = followChain(trustPinned(a.publicKeyPem), wire(links), SITE);
    expect(r1.refused).toBeUndefined();
    expect(r1.trust.active.keyId).toBe(b.keyId);
    expect(r1.trust.seq).toBe(1);
    // Positive controls: both keys accepted in the overlap.
    expect(reason(() => verifySignedAssignment(envelope(b, 2), r1.trust, 1, undefined, T0))).toBe("accepted");
    expect(reason(() => verifySignedAssignment(envelope(a, 2), r1.trust, 1, undefined, T0))).toBe("accepted");
    // After the overlap, by the clock: refused as retired.
    expect(reason(() => verifySignedAssignment(envelope(a, 2), r1.trust, 1, undefined, T0 + 3600_001))).toBe("retired-key");
    // An explicit retirement, signed by the new key: refused at once.
    links.push(retire(links, b, a.keyId));
    const r2 = followChain(r1.trust, wire(links), SITE);
    expect(r2.refused).toBeUndefined();
    expect(r2.trust.previous).toEqual([]);
    expect(reason(() => verifySignedAssignment(envelope(a, 2), r2.trust, 1, undefined, T0))).toBe("unknown-key");
    expect(reason(() => verifySignedAssignment(envelope(b, 2), r2.trust, 1, undefined, T0))).toBe("accepted");
  });

  it("an agent that only knows the first key follows every link, the retired one's included", () => {
    const links: KeyAnnouncement[] = [];
    links.push(rotate(links, a, b, T0 + 1000));
    links.push(retire(links, b, a.keyId));
    links.push(rotate(links, b, c, T0 + 1000));
    const r = followChain(trustPinned(a.publicKeyPem), wire(links), SITE);
    expect(r.refused).toBeUndefined();
    expect(r.followed.map((l) => l.seq)).toEqual([1, 2, 3]);
    expect(r.trust.active.keyId).toBe(c.keyId);
    // b's overlap ended before the agent came back: listed, not accepted (a's was retired by a link: gone).
    expect(r.trust.previous.map((p) => p.keyId)).toEqual([b.keyId]);
    expect(acceptedKeyIds(r.trust, T0 + 5000)).toEqual([c.keyId]);
    expect(reason(() => verifySignedAssignment(envelope(b, 2), r.trust, 1, undefined, T0 + 5000))).toBe("retired-key");
    expect(reason(() => verifySignedAssignment(envelope(a, 2), r.trust, 1, undefined, T0 + 5000))).toBe("unknown-key");
  });

  it("an agent pinned to a later key (enrolled after a rotation) starts at the link that introduced it", () => {
    const links: KeyAnnouncement[] = [];
    links.push(rotate(links, a, b, T0 + 1000));
    links.push(rotate(links, b, c, T0 + 1000));
    const r = followChain(trustPinned(b.publicKeyPem), wire(links), SITE);
    expect(r.refused).toBeUndefined();
    expect(r.trust.active.keyId).toBe(c.keyId);
    expect(r.followed.map((l) => l.seq)).toEqual([2]);
  });

  it("a forged announcement (signed by a key the agent does not hold) is refused and the keys stay", () => {
    const mallory = generateSigningKeys();
    const links: KeyAnnouncement[] = [rotate([], mallory, c, T0 + 1000)];
    const trust = trustPinned(a.publicKeyPem);
    const r = followChain(trust, wire(links), SITE);
    expect(r.refused?.reason).toBe("unknown-signer");
    expect(r.trust).toEqual(trust);
    // Claiming the trusted signer's id does not help: the signature is checked with the trusted key.
    const claimed = { ...rotate([], mallory, c, T0 + 1000), signerKeyId: a.keyId, previousKeyId: a.keyId };
    const r2 = followChain(trust, wire([claimed]), SITE);
    expect(r2.refused?.reason).toBe("bad-signature");
    expect(r2.trust).toEqual(trust);
    // An altered link (its notAfter stretched) no longer verifies.
    const good = rotate([], a, b, T0 + 1000);
    const r3 = followChain(trust, wire([{ ...good, previousNotAfter: iso(T0 + 10 ** 10) }]), SITE);
    expect(r3.refused?.reason).toBe("bad-signature");
  });

  it("a forged link after genuine ones keeps what was followed before it", () => {
    const mallory = generateSigningKeys();
    const links: KeyAnnouncement[] = [];
    links.push(rotate(links, a, b, T0 + 1000));
    links.push(signKeyAnnouncement({ site: SITE, seq: 2, next: mallory, previousKeyId: mallory.keyId, previousNotAfter: iso(T0) }, mallory.privateKeyPem));
    const r = followChain(trustPinned(a.publicKeyPem), wire(links), SITE);
    expect(r.trust.active.keyId).toBe(b.keyId);
    expect(r.refused).toMatchObject({ seq: 2, reason: "unknown-signer" });
  });

  it("another site's chain and a rewritten history are refused", () => {
    const links = [rotate([], a, b, T0 + 1000)];
    expect(followChain(trustPinned(a.publicKeyPem), wire(links), "other").refused?.reason).toBe("wrong-site");
    const learned = followChain(trustPinned(a.publicKeyPem), wire(links), SITE).trust;
    // The chain replaced by one where link 1 names another key (someone with a's key and write access).
    const forked = [rotate([], a, c, T0 + 1000)];
    const r = followChain(learned, wire(forked), SITE);
    expect(r.refused?.reason).toBe("fork");
    expect(r.trust.active.keyId).toBe(b.keyId);
  });
});
