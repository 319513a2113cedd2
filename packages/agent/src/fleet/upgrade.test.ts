import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { generateSigningKeys } from "@netfleet/shared";
import { verifyBundle } from "./upgrade-fetch.ts";
import { fileSha256, readMarker, revertUpgrade, swapIn, upgradePaths, writeFileAtomic, writeMarker } from "./upgrade-files.ts";
import { UpgradeRefusedError, bundleSha256 as sha256Hex, signManifest, signRecord, signTarget, verifyTarget } from "@netfleet/shared";

const keys = generateSigningKeys();
const code = Buffer.from("export const v = 1;\n");
const where = { site: "lab", host: "hv1" };
const enc = (v: unknown) => Buffer.from(JSON.stringify(v));

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof UpgradeRefusedError) return err.reason;
    throw err;
  }
  return "accepted";
}

describe("agent upgrade wire: signed targets and manifests", () => {
  it("accepts the controller's target for this host (positive control)", () => {
    const t = signTarget("hv1", signManifest("lab", code, "1.2.3", keys.privateKeyPem), 30, keys.privateKeyPem);
    expect(verifyTarget(enc(t), keys.publicKeyPem, where)).toMatchObject({ host: "hv1", manifest: { version: "1.2.3", sha256: sha256Hex(code), size: code.length } });
  });

  it("refuses another key, an altered manifest or target, another host, and garbage", () => {
    const other = generateSigningKeys();
    const m = signManifest("lab", code, "1.2.3", keys.privateKeyPem);
    expect(refusal(() => verifyTarget(enc(signTarget("hv1", m, 30, other.privateKeyPem)), keys.publicKeyPem, where))).toBe("unknown-key");
    // A manifest signed by another key inside a target the controller signed.
    expect(refusal(() => verifyTarget(enc(signTarget("hv1", signManifest("lab", code, "1.2.3", other.privateKeyPem), 30, keys.privateKeyPem)), keys.publicKeyPem, where))).toBe("unknown-key");
    const t = signTarget("hv1", m, 30, keys.privateKeyPem);
    expect(refusal(() => verifyTarget(enc({ ...t, manifest: { ...t.manifest, sha256: "0".repeat(64) } }), keys.publicKeyPem, where))).toBe("bad-signature");
    expect(refusal(() => verifyTarget(enc({ ...t, trialS: 3600 }), keys.publicKeyPem, where))).toBe("bad-signature");
    expect(refusal(() => verifyTarget(enc(signTarget("hv2", m, 30, keys.privateKeyPem)), keys.publicKeyPem, where))).toBe("wrong-host");
    expect(refusal(() => verifyTarget(Buffer.from("{"), keys.publicKeyPem, where))).toBe("decode");
    expect(refusal(() => verifyTarget(enc({ ...t, kind: "agent-bundle" }), keys.publicKeyPem, where))).toBe("decode");
    // Another protocol major is not read (a newer minor is: its fields are signed and kept).
    expect(refusal(() => verifyTarget(enc({ ...t, protocol: "2.0" }), keys.publicKeyPem, where))).toBe("decode");
    expect(refusal(() => verifyTarget(enc({ ...t, protocol: "1.9", later: "x" }), keys.publicKeyPem, where))).toBe("bad-signature");
    const { signature: _s, keyId: _k, ...fields } = t;
    expect(refusal(() => verifyTarget(enc(signRecord({ ...fields, protocol: "1.9", later: "x" }, keys.privateKeyPem)), keys.publicKeyPem, where))).toBe("accepted");
  });

  it("verifies against the trusted set across rotations: the new key and an earlier one in its overlap, not a retired one", () => {
    const next = generateSigningKeys();
    const now = Date.parse("2026-01-01T00:00:00Z");
    const trust = (notAfter: string) => ({ seq: 1, active: { keyId: next.keyId, publicKeyPem: next.publicKeyPem }, previous: [{ keyId: keys.keyId, publicKeyPem: keys.publicKeyPem, notAfter }] });
    const byNew = enc(signTarget("hv1", signManifest("lab", code, "2", next.privateKeyPem), 30, next.privateKeyPem));
    const byOld = enc(signTarget("hv1", signManifest("lab", code, "2", keys.privateKeyPem), 30, keys.privateKeyPem));
    expect(refusal(() => verifyTarget(byNew, trust("2026-01-02T00:00:00Z"), where, now))).toBe("accepted");
    expect(refusal(() => verifyTarget(byOld, trust("2026-01-02T00:00:00Z"), where, now))).toBe("accepted");
    expect(refusal(() => verifyTarget(byOld, trust("2025-12-31T00:00:00Z"), where, now))).toBe("retired-key");
    expect(refusal(() => verifyTarget(byNew, keys.publicKeyPem, where))).toBe("unknown-key");
  });

  it("checks fetched bytes against the manifest: one byte changed is refused", () => {
    const m = signManifest("lab", code, "1.2.3", keys.privateKeyPem);
    expect(() => verifyBundle(code, m)).not.toThrow();
    const bad = Buffer.from(code);
    bad[3]! ^= 1;
    expect(refusal(() => verifyBundle(bad, m))).toBe("sha256-mismatch");
    expect(refusal(() => verifyBundle(Buffer.concat([code, Buffer.from(" ")]), m))).toBe("size-mismatch");
  });
});

describe("agent upgrade files: stage, swap, revert", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("swaps a staged bundle in keeping the previous one, and reverts to it", async () => {
    dir = mkdtempSync(join(tmpdir(), "upgrade-files-"));
    const p = upgradePaths(join(dir, "agent.mjs"));
    writeFileSync(p.current, "old");
    writeFileAtomic(p.next, "new", 0o644);
    const marker = await writeMarker(p, { state: "staged", from: { version: "1", sha256: sha256Hex(Buffer.from("old")) }, to: { version: "2", sha256: sha256Hex(Buffer.from("new")), revision: 5 }, trialS: 10 });
    const trying = await swapIn(p, marker);
    expect(trying.state).toBe("trying");
    expect(readFileSync(p.current, "utf8")).toBe("new");
    expect(readFileSync(p.prev, "utf8")).toBe("old");
    expect(existsSync(p.next)).toBe(false);
    expect(statSync(p.prev).mode & 0o777).toBe(0o644);
    const reverted = await revertUpgrade(p, trying, "exited with code 7");
    expect(reverted).toMatchObject({ state: "reverted", reason: "exited with code 7" });
    expect(readFileSync(p.current, "utf8")).toBe("old");
    expect(readFileSync(p.failed, "utf8")).toBe("new");
    expect(readMarker(p)?.state).toBe("reverted");
  });

  it("does not start a staged file that is not the one verified", async () => {
    dir = mkdtempSync(join(tmpdir(), "upgrade-files-"));
    const p = upgradePaths(join(dir, "agent.mjs"));
    writeFileSync(p.current, "old");
    writeFileSync(p.next, "swapped behind its back");
    const m = await writeMarker(p, { state: "staged", from: { version: "1", sha256: sha256Hex(Buffer.from("old")) }, to: { version: "2", sha256: sha256Hex(Buffer.from("new")), revision: 5 }, trialS: 10 });
    expect((await swapIn(p, m)).state).toBe("reverted");
    expect(readFileSync(p.current, "utf8")).toBe("old");
    expect(existsSync(p.next)).toBe(false);
  });

  it("writes through no link and leaves no temp file: a link at the name is replaced, its target untouched", () => {
    dir = mkdtempSync(join(tmpdir(), "upgrade-files-"));
    const outside = join(dir, "outside");
    writeFileSync(outside, "keep");
    symlinkSync(outside, join(dir, "agent.mjs.next"));
    writeFileAtomic(join(dir, "agent.mjs.next"), "bundle", 0o644);
    expect(readFileSync(outside, "utf8")).toBe("keep");
    expect(readFileSync(join(dir, "agent.mjs.next"), "utf8")).toBe("bundle");
    expect(fileSha256(join(dir, "agent.mjs.next"))).toBe(sha256Hex(Buffer.from("bundle")));
    expect(statSync(join(dir, "agent.mjs.next")).isFile()).toBe(true);
  });
});
