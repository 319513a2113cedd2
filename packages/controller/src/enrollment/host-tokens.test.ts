import { mkdtemp, rm, stat, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseHostToken, parseJoinToken } from "@netfleet/shared";
import { HOST_TOKEN_KEY_FILE, hostTokenKey, mintHostToken, mintHostTokenWithKey, verifyHostToken } from "./host-tokens.ts";
import { KeyedTokenBuckets, TokenBucket } from "./rate-limit.ts";
import { tokenMatches } from "./match.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "enroll-tokens-"));
  dirs.push(d);
  return d;
}

describe("host tokens", () => {
  const key = Buffer.alloc(32, 7);
  const base = { site: "lab", enrollPassword: "abcdefgh1234", host: "hv1" };

  it("verify what was minted for the host, and refuse another site, a changed part, a foreign key, an expired one", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    const { token, expiresAt } = mintHostTokenWithKey(key, { ...base, ttlMs: 3600_000, now });
    expect(expiresAt.toISOString()).toBe("2026-01-01T01:00:00.000Z");
    expect(parseJoinToken(token)).toMatchObject({ enrollPassword: "abcdefgh1234", host: "hv1", token });
    expect(verifyHostToken(key, "lab", token, now)).toMatchObject({ ok: true, token: { host: "hv1" } });
    expect(verifyHostToken(key, "other", token, now)).toMatchObject({ ok: false, reason: expect.stringMatching(/bad MAC/) });
    expect(verifyHostToken(key, "lab", token.replace(".hv1.", ".hv2."), now)).toMatchObject({ ok: false, reason: expect.stringMatching(/bad MAC/) });
    const p = parseHostToken(token)!;
    expect(verifyHostToken(key, "lab", token.replace(`.${p.expiresAt.toString(36)}.`, `.${(p.expiresAt + 999_999).toString(36)}.`), now)).toMatchObject({ ok: false });
    expect(verifyHostToken(Buffer.alloc(32, 8), "lab", token, now)).toMatchObject({ ok: false, reason: expect.stringMatching(/bad MAC/) });
    expect(verifyHostToken(key, "lab", token, now + 3600_000)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired/) });
    expect(verifyHostToken(key, "lab", "abcdefgh1234.the-site-secret-xxxxxxxx", now)).toMatchObject({ ok: false, reason: "not a host token" });
  });

  it("are unique, refuse bad names and lifetimes, and the site token still parses as before", () => {
    const a = mintHostTokenWithKey(key, base).token;
    const b = mintHostTokenWithKey(key, base).token;
    expect(a).not.toBe(b);
    expect(() => mintHostTokenWithKey(key, { ...base, host: "HV1" })).toThrow(/not a DNS label/);
    expect(() => mintHostTokenWithKey(key, { ...base, ttlMs: 31 * 86400_000 })).toThrow(/30 days/);
    expect(() => mintHostTokenWithKey(key, { ...base, ttlMs: 0 })).toThrow(/30 days/);
    expect(parseJoinToken("abcdefgh1234.the-site-secret-xxxxxxxx")).toEqual({ enrollPassword: "abcdefgh1234", token: "abcdefgh1234.the-site-secret-xxxxxxxx" });
    expect(() => parseJoinToken("nfh1.short")).toThrow(/<id>\.<secret>/);
  });

  it("keep their key in a 0600 file made once (concurrent callers get the same key), never through a planted link", async () => {
    const dir = join(await tempDir(), "credentials");
    const keys = await Promise.all([hostTokenKey(dir), hostTokenKey(dir), hostTokenKey(dir)]);
    expect(keys[0]!.length).toBe(32);
    expect(keys[1]!.equals(keys[0]!) && keys[2]!.equals(keys[0]!)).toBe(true);
    expect((await stat(join(dir, HOST_TOKEN_KEY_FILE))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const minted = await mintHostToken(dir, base);
    expect(verifyHostToken(keys[0]!, "lab", minted.token)).toMatchObject({ ok: true });
    // A dangling link where the key goes: the exclusive create refuses to follow it.
    const other = join(await tempDir(), "credentials");
    const { mkdir } = await import("node:fs/promises");
    await mkdir(other, { mode: 0o700 });
    await symlink(join(other, "elsewhere"), join(other, HOST_TOKEN_KEY_FILE));
    await expect(hostTokenKey(other)).rejects.toThrow(/ELOOP/);
    await expect(stat(join(other, "elsewhere"))).rejects.toThrow(/ENOENT/);
  });
});

describe("enrollment rate limits and site tokens", () => {
  it("a token bucket allows its burst, then its rate", () => {
    let t = 0;
    const b = new TokenBucket({ burst: 3, perSecond: 2 }, () => t);
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    t += 500;
    expect([b.take(), b.take()]).toEqual([true, false]);
  });
  it("keyed buckets stay bounded: full ones are dropped, and a new key is refused when none is", () => {
    let t = 0;
    const k = new KeyedTokenBuckets({ burst: 1, perSecond: 1 }, 2, () => t);
    expect([k.take("a"), k.take("b"), k.take("c")]).toEqual([true, true, false]);
    t += 1000;
    expect(k.take("c")).toBe(true);
    expect(k.size).toBeLessThanOrEqual(2);
  });
  it("site tokens: a list with deadlines", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    const list = [{ token: "new" }, { token: "old", notAfter: "2026-01-02T00:00:00Z" }, { token: "older", notAfter: "2025-12-31T00:00:00Z" }];
    expect([tokenMatches("new", list, now), tokenMatches("old", list, now), tokenMatches("older", list, now), tokenMatches("x", list, now)]).toEqual([true, true, false, false]);
    expect(tokenMatches("old", list, Date.parse("2026-01-03T00:00:00Z"))).toBe(false);
  });
});
