import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { inMemoryFilesystem, writeOwned } from "./write-owned.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nf-wo-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const modeOf = (path: string) => statSync(path).mode & 0o7777;

describe("writeOwned: mode and owner exact, whatever creates the file narrower or in another group", () => {
  it("a umask that narrows the mode (077 against 0644): the file still gets 0644; one that does not (022 against 0600): 0600", async () => {
    const before = process.umask(0o077);
    try {
      await writeOwned(join(dir, "public.json"), "{}\n", 0o644);
      expect(modeOf(join(dir, "public.json"))).toBe(0o644);
      process.umask(0o022);
      await writeOwned(join(dir, "secret.json"), "{}\n", 0o600);
      expect(modeOf(join(dir, "secret.json"))).toBe(0o600);
    } finally {
      process.umask(before);
    }
    expect(readdirSync(dir).sort()).toEqual(["public.json", "secret.json"]);
  });

  it.skipIf(process.getuid?.() !== 0)("a setgid directory of another group (new files inherit its group): the file is still this process's group", async () => {
    const shared = join(dir, "shared");
    mkdirSync(shared);
    const other = process.getgid!() === 1 ? 2 : 1;
    chownSync(shared, process.getuid!(), other);
    chmodSync(shared, 0o2775);
    await writeOwned(join(shared, "state.json"), "{}\n", 0o600);
    const st = statSync(join(shared, "state.json"));
    expect([st.uid, st.gid]).toEqual([process.getuid!(), process.getgid!()]);
    expect(st.mode & 0o7777).toBe(0o600);
  });

  it("writes every byte (a value larger than one write, bytes or text), with or without the directory's fsync", async () => {
    const big = new Uint8Array(3 * 1024 * 1024 + 7).map((_, i) => i % 251);
    await writeOwned(join(dir, "big.bin"), big, 0o600);
    expect(Buffer.compare(readFileSync(join(dir, "big.bin")), Buffer.from(big))).toBe(0);
    await writeOwned(join(dir, "text.json"), "ünïcode ✓\n", 0o600, { syncDirectory: false });
    expect(readFileSync(join(dir, "text.json"), "utf8")).toBe("ünïcode ✓\n");
    expect(readdirSync(dir).sort()).toEqual(["big.bin", "text.json"]);
  });

  it("a directory that is not there: the error of open(2), nothing left behind", async () => {
    await expect(writeOwned(join(dir, "missing", "x.json"), "{}", 0o600)).rejects.toMatchObject({ code: "ENOENT" });
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("inMemoryFilesystem: where fsync(2) is a no-op and writeOwned skips it", () => {
  it("tmpfs (/dev/shm) is, procfs and a missing path are not; a write on tmpfs is still whole, with its mode", async () => {
    expect(inMemoryFilesystem("/dev/shm")).toBe(true);
    expect(inMemoryFilesystem("/proc")).toBe(false);
    expect(inMemoryFilesystem(join(dir, "missing"))).toBe(false);
    const shm = mkdtempSync("/dev/shm/nf-wo-");
    try {
      await writeOwned(join(shm, "state.json"), '{"a":1}\n', 0o600);
      expect(readFileSync(join(shm, "state.json"), "utf8")).toBe('{"a":1}\n');
      expect(modeOf(join(shm, "state.json"))).toBe(0o600);
      expect(readdirSync(shm)).toEqual(["state.json"]);
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });
});
