import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DiskFullError, diskFullError } from "../store/files.ts";
import { isStoreFull, isTransient } from "../store/kv.ts";
import { StateDirLock, StateDirLockedError } from "../store/lock.ts";
import { diskFullIn, watchDisk } from "./supervise.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function scratch(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "serve-unit-"));
  dirs.push(d);
  return d;
}

describe("disk full, as serve recognises it", () => {
  it("ENOSPC and EDQUOT become one line naming the path; other errors do not", () => {
    const enospc = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    expect(diskFullError(enospc, "/s/secrets.json")?.message).toBe("disk full: /s/secrets.json");
    expect(diskFullError(Object.assign(new Error("quota"), { code: "EDQUOT" }), "/s/x")).toBeInstanceOf(DiskFullError);
    expect(diskFullError(Object.assign(new Error("denied"), { code: "EACCES" }), "/s/x")).toBeUndefined();
  });

  it("JetStream's insufficient-resources errors are a full store, never retried; a timeout still is", () => {
    const js = new Error("insufficient storage resources available");
    expect(isStoreFull(js)).toBe(true);
    expect(isStoreFull(Object.assign(new Error("x"), { api_error: { err_code: 10047 } }))).toBe(true);
    expect(isTransient(new Error("wrapped", { cause: js }))).toBe(false);
    expect(isStoreFull(new Error("timeout"))).toBe(false);
    expect(isTransient(Object.assign(new Error("timeout"), { name: "TimeoutError" }))).toBe(true);
  });

  it("a control-plane event carrying either names the path (the store for JetStream's); others name none", () => {
    expect(diskFullIn({ event: "handler-error", error: "disk full: /s/credentials/hv1.json" }, "/s/nats")).toBe("/s/credentials/hv1.json");
    expect(diskFullIn({ event: "publish-retry", error: "insufficient resources" }, "/s/nats")).toBe("/s/nats");
    expect(diskFullIn({ event: "handler-error", error: "wrong enrollment token" }, "/s/nats")).toBeUndefined();
    expect(diskFullIn({ event: "ready" }, "/s/nats")).toBeUndefined();
  });

  it("watchDisk fires once under the threshold, and not over it", async () => {
    const dir = await scratch();
    const fired: string[] = [];
    const stopFull = watchDisk(dir, (p) => fired.push(p), { intervalMs: 20, minFreeBytes: Number.MAX_SAFE_INTEGER });
    const stopRoomy = watchDisk(dir, (p) => fired.push(`roomy ${p}`), { intervalMs: 20, minFreeBytes: 1 });
    await new Promise((r) => setTimeout(r, 200));
    stopFull();
    stopRoomy();
    expect(fired).toEqual([dir]);
  });
});

describe("the state dir lock", () => {
  it("a second holder is refused while the first holds it; released, it is free again", async () => {
    const dir = await scratch();
    const first = await StateDirLock.acquire(dir);
    // flock(2) locks belong to the open file description: a second open in this same process conflicts too.
    const refused = await StateDirLock.acquire(dir).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(StateDirLockedError);
    expect((refused as Error).message).toBe(`state dir ${dir} is in use: ${join(dir, "serve.lock")} is locked by a process this user cannot see`);
    first.release();
    const again = await StateDirLock.acquire(dir); // control
    again.release();
    expect(await readdir(dir)).toEqual(["serve.lock"]);
  });

  it("a symlink planted at serve.lock is not followed (nothing made or locked elsewhere)", async () => {
    const dir = await scratch();
    const elsewhere = join(dir, "elsewhere");
    await writeFile(elsewhere, "");
    const state = join(dir, "state");
    await mkdir(state);
    await symlink(elsewhere, join(state, "serve.lock"));
    await expect(StateDirLock.acquire(state)).rejects.toMatchObject({ code: "ELOOP" });
  });
});
