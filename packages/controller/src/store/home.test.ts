import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ControllerHome, StateFileError } from "./home.ts";

describe("ControllerHome: a broken state file is one line naming it", () => {
  const dir = mkdtempSync(join(tmpdir(), "nf-home-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const home = (name: string, files: Record<string, string>) => {
    const d = join(dir, name);
    mkdirSync(d);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text, { mode: 0o600 });
    return new ControllerHome(d);
  };

  it("secrets.json that is not JSON, or does not fit, and controller.json the same", async () => {
    const garbage = home("garbage", { "secrets.json": "garbage\n" });
    await expect(garbage.secrets("lab", { create: false })).rejects.toThrow(new StateFileError(join(garbage.dir, "secrets.json"), `not valid JSON (Unexpected token 'g', "garbage\n" is not valid JSON)`));
    const partial = home("partial", { "secrets.json": '{"site":"lab"}' });
    const err = await partial.secrets(undefined, { create: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as Error).message).toBe(`${join(partial.dir, "secrets.json")}: controller: Invalid input: expected object, received undefined (and 2 more problems)`);
    const config = home("config", { "controller.json": '{"site":"lab"' });
    await expect(config.config()).rejects.toThrow(/controller\.json: not valid JSON/);
    const wrong = home("wrong", { "controller.json": JSON.stringify({ site: "lab", inventory: "/x", nats: [], replicas: 1 }) });
    await expect(wrong.config()).rejects.toThrow(`${join(wrong.dir, "controller.json")}: nats: Too small: expected array to have >=1 items`);
  });

  it("a missing state dir: 'no controller state', and it stays missing when nothing may be created", async () => {
    const missing = new ControllerHome(join(dir, "missing"));
    expect(await missing.config()).toBeUndefined();
    await expect(missing.secrets("lab", { create: false })).rejects.toThrow(`no controller state in ${missing.dir}: start netfleet serve <site-dir> --state-dir ${missing.dir} first (or pass --state-dir)`);
    expect(existsSync(missing.dir)).toBe(false);
  });
});
