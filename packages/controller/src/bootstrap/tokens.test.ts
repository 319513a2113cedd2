import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseJoinToken } from "@netfleet/shared";
import { ControllerHome } from "../store/home.ts";
import { KEEP_MARGIN_MS, hostTokens, siteTokens } from "./tokens.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "secrets-tokens-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("the tokens bootstrap writes", () => {
  it("mints a host token per host from the state dir, each for its host, a fresh one each time", async () => {
    const secrets = await new ControllerHome(dir).secrets("lab");
    const tokens = await hostTokens(dir, "lab", 3600_000);
    const a = await tokens.forHost("hv1");
    const b = await tokens.forHost("hv1");
    expect(parseJoinToken(a)).toMatchObject({ host: "hv1", enrollPassword: secrets.enrollment.enrollPassword });
    expect(a).not.toBe(b);
    expect(parseJoinToken(await tokens.forHost("hv2")).host).toBe("hv2");
    expect(a).not.toContain(secrets.enrollment.token.split(".")[1]);
  });

  it("keeps a token only for its own host while it is good for KEEP_MARGIN_MS more, or once its agent enrolled", async () => {
    await new ControllerHome(dir).secrets("lab");
    let now = Date.now();
    const tokens = await hostTokens(dir, "lab", 2 * KEEP_MARGIN_MS, () => now);
    const t = await tokens.forHost("hv1");
    expect(tokens.keeps(t, "hv1", false)).toBe(true);
    expect(tokens.keeps(t, "hv2", false)).toBe(false);
    expect(tokens.keeps("abcdefgh.0123456789abcdefXYZ", "hv1", false)).toBe(false);
    now += KEEP_MARGIN_MS + 1000;
    expect(tokens.keeps(t, "hv1", false)).toBe(false);
    expect(tokens.keeps(t, "hv1", true)).toBe(true);
  });

  it("refuses a state dir without the controller's secrets, saying so; the site token is kept only when equal", async () => {
    await expect(hostTokens(join(dir, "none"), "lab", 3600_000)).rejects.toThrow(/no controller state in/);
    await new ControllerHome(dir).secrets("lab");
    await expect(hostTokens(dir, "other", 3600_000)).rejects.toThrow(/belongs to site lab, not other/);
    const site = siteTokens("abcdefgh.0123456789abcdefXYZ");
    expect(await site.forHost("hv1")).toBe("abcdefgh.0123456789abcdefXYZ");
    expect(site.keeps("abcdefgh.0123456789abcdefXYZ", "hv1", false)).toBe(true);
    expect(site.keeps("abcdefgh.0123456789abcdefXYZw", "hv1", false)).toBe(false);
  });
});
