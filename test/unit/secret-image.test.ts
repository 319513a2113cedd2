import { createHash } from "node:crypto";
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CREATE_EXCLUSIVE, DirectoryHandle, UnsafePathError, writeOwned } from "../../packages/agent/src/write-owned.ts";
import { writeImageFiles } from "../../packages/controller/src/bootstrap/image.ts";
import { REMOTE } from "../../packages/controller/src/bootstrap/layout.ts";
import { main } from "../../packages/controller/src/main.ts";
import { memoryOutput } from "../../packages/controller/src/output.ts";
import { ControllerHome } from "../../packages/controller/src/store/home.ts";

const SITE = join(import.meta.dirname, "..", "bootstrap", "site");

/**
 * Attacks on the files that hold the join token: a symlink planted at
 * agent.json or at a directory on its way inside an image root, a stale temp
 * file, a directory swapped for a link after it was opened. Each is looked
 * for at its target (the file outside the image: content, mode, mtime; the
 * planted temp file) and has its positive control (a clean root gets
 * agent.json 0600 in /etc/netfleet 0700, owned by this process).
 */

const TOKEN = "abcdefgh.0123456789abcdefXYZsecret";
const config = { site: "lab", nats: ["nats://10.0.0.1:4222"], token: TOKEN };
const code = Buffer.from("// agent bundle\n");
const bundle = { code, sha256: createHash("sha256").update(code).digest("hex") };

let base: string;
let root: string;
let outside: string;
let node: string;

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), "secrets-image-"));
  root = join(base, "image");
  outside = join(base, "outside");
  mkdirSync(root);
  mkdirSync(outside);
  // A stand-in for the Node binary: any executable file (the real one is 100 MB).
  node = join(base, "node");
  writeFileSync(node, "#!/bin/sh\n", { mode: 0o755 });
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

const write = () => writeImageFiles(root, { bundle, node, config });
const at = (path: string) => join(root, path.replace(/^\//, ""));
const mode = (path: string) => lstatSync(path).mode & 0o7777;
/** Name, content, mode and mtime of everything in a directory: what an attack must leave as it was. */
const snapshot = (dir: string) =>
  readdirSync(dir)
    .sort()
    .map((n) => {
      const s = lstatSync(join(dir, n));
      return { n, mode: s.mode, mtimeMs: s.mtimeMs, data: s.isFile() ? readFileSync(join(dir, n), "utf8") : "" };
    });

describe("bootstrap --image-root writes agent.json without following links", () => {
  it("positive control: a clean image root gets agent.json 0600 in /etc/netfleet 0700, owned by this process; a second run changes nothing", () => {
    const files = write();
    expect(files.every((f) => f.changed)).toBe(true);
    const agentJson = at(REMOTE.config);
    expect(mode(agentJson)).toBe(0o600);
    expect(mode(at(REMOTE.configDir))).toBe(0o700);
    expect(statSync(agentJson).uid).toBe(process.getuid!());
    expect(JSON.parse(readFileSync(agentJson, "utf8"))).toEqual(config);
    expect(readlinkSync(at("/etc/systemd/system/multi-user.target.wants/netfleet-agent.service"))).toBe(REMOTE.unit);
    // No temp file left anywhere in the image.
    expect(readdirSync(at(REMOTE.configDir))).toEqual(["agent.json"]);
    expect(readdirSync(at(REMOTE.dir)).sort()).toEqual(["agent.mjs", "node"]);
    expect(write().filter((f) => f.changed)).toEqual([]);
  });

  it("a symlink planted at agent.json pointing outside: refused, the file outside unchanged", () => {
    const victim = join(outside, "victim");
    writeFileSync(victim, "original\n", { mode: 0o644 });
    const before = snapshot(outside);
    mkdirSync(at(REMOTE.configDir), { recursive: true, mode: 0o700 });
    symlinkSync(victim, at(REMOTE.config));
    expect(write).toThrow(UnsafePathError);
    expect(write).toThrow(`${at(REMOTE.config)}: is a symbolic link; refused, nothing written`);
    expect(snapshot(outside)).toEqual(before);
    expect(readFileSync(victim, "utf8")).not.toContain(TOKEN);
    // The link is still the planted one, and no temp file was left beside it.
    expect(readlinkSync(at(REMOTE.config))).toBe(victim);
    expect(readdirSync(at(REMOTE.configDir))).toEqual(["agent.json"]);
  });

  it("a symlink planted at /etc/netfleet (a parent) pointing outside: refused, nothing written there", () => {
    mkdirSync(at("/etc"));
    symlinkSync(outside, at(REMOTE.configDir));
    expect(write).toThrow(`${at(REMOTE.configDir)}: is a symbolic link; refused, nothing written`);
    expect(readdirSync(outside)).toEqual([]);
  });

  it("a symlink planted at /etc (the first step inside the root) pointing outside: refused, nothing written there", () => {
    symlinkSync(outside, at("/etc"));
    expect(write).toThrow(`${at("/etc")}: is a symbolic link; refused, nothing written`);
    expect(readdirSync(outside)).toEqual([]);
  });

  it("a stale temp file (0644) and an old agent.json 0644 planted: the result is still 0600, the planted temp untouched, none of ours left", () => {
    mkdirSync(at(REMOTE.configDir), { recursive: true, mode: 0o755 });
    // write-file-atomic's name (agent.json.<murmurhash>) and ours (.agent.json.<random>.tmp): neither is written through.
    const stale = [at(`${REMOTE.config}.1234567890`), at(`${REMOTE.configDir}/.agent.json.000000000000.tmp`)];
    for (const f of stale) writeFileSync(f, "stale\n", { mode: 0o644 });
    writeFileSync(at(REMOTE.config), JSON.stringify(config, null, 2) + "\n", { mode: 0o644 });
    chmodSync(at(REMOTE.config), 0o644);
    const files = write();
    expect(files.find((f) => f.path === REMOTE.config)?.changed).toBe(true);
    expect(mode(at(REMOTE.config))).toBe(0o600);
    expect(mode(at(REMOTE.configDir))).toBe(0o700);
    for (const f of stale) {
      expect(readFileSync(f, "utf8")).toBe("stale\n");
      expect(mode(f)).toBe(0o644);
    }
    expect(readdirSync(at(REMOTE.configDir)).sort()).toEqual([".agent.json.000000000000.tmp", "agent.json", "agent.json.1234567890"]);
  });
});

describe("netfleet bootstrap --image-root (the command, in-process)", () => {
  const run = async (...argv: string[]) => {
    const out = memoryOutput(false);
    const code = await main(argv, out);
    return { code, stdout: out.stdout.join("\n"), stderr: out.stderr.join("\n") };
  };

  it("a link at /etc/netfleet: exit 1, one line naming it, nothing outside; control: a clean root gets the host's own token 0600", async () => {
    const stateDir = join(base, "state");
    await new ControllerHome(stateDir).secrets("boot");
    mkdirSync(at("/etc"));
    symlinkSync(outside, at(REMOTE.configDir));
    const refused = await run("bootstrap", SITE, "--state-dir", stateDir, "--image-root", root, "--host", "hv1");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`netfleet bootstrap: --image-root ${root}: ${at(REMOTE.configDir)}: is a symbolic link; refused, nothing written`);
    expect(readdirSync(outside)).toEqual([]);
    rmSync(at(REMOTE.configDir));
    const made = await run("bootstrap", SITE, "--state-dir", stateDir, "--image-root", root, "--host", "hv1");
    expect(made.code, made.stderr).toBe(0);
    expect(mode(at(REMOTE.config))).toBe(0o600);
    expect(JSON.parse(readFileSync(at(REMOTE.config), "utf8"))).toMatchObject({ site: "boot", name: "hv1", token: expect.stringMatching(/^nfh1\.[^.]+\.hv1\./) });
  }, 60_000);
});

describe("the open(2) flags and the directory handle", () => {
  it("CREATE_EXCLUSIVE (O_CREAT|O_EXCL|O_NOFOLLOW) fails on an existing file and on a symlink, writing nothing; control: a fresh name is created", () => {
    const victim = join(outside, "victim");
    writeFileSync(victim, "original\n");
    symlinkSync(victim, join(root, "link"));
    writeFileSync(join(root, "stale"), "stale\n");
    expect(() => openSync(join(root, "link"), CREATE_EXCLUSIVE, 0o600)).toThrow(/EEXIST/);
    expect(() => openSync(join(root, "stale"), CREATE_EXCLUSIVE, 0o600)).toThrow(/EEXIST/);
    expect(readFileSync(victim, "utf8")).toBe("original\n");
    expect(readFileSync(join(root, "stale"), "utf8")).toBe("stale\n");
    closeSync(openSync(join(root, "fresh"), CREATE_EXCLUSIVE, 0o600));
    expect(mode(join(root, "fresh"))).toBe(0o600);
  });

  it("a directory swapped for a symlink after it was opened: the write lands in the directory that was opened, never behind the link (race-free)", () => {
    const top = DirectoryHandle.openRoot(root);
    const dir = top.walk("etc/netfleet", 0o755, 0o700);
    // The attacker moves the directory away and puts a link to `outside` where it was.
    renameSync(join(root, "etc", "netfleet"), join(root, "etc", "moved"));
    symlinkSync(outside, join(root, "etc", "netfleet"));
    dir.write("agent.json", Buffer.from("secret\n"), 0o600);
    dir.close();
    expect(readdirSync(outside)).toEqual([]);
    expect(readFileSync(join(root, "etc", "moved", "agent.json"), "utf8")).toBe("secret\n");
    // And walking the path again now refuses the link.
    expect(() => top.walk("etc/netfleet", 0o755, 0o700)).toThrow(`${join(root, "etc", "netfleet")}: is a symbolic link`);
    top.close();
  });

  it("a regular file where a directory is expected is refused, naming it", () => {
    writeFileSync(join(root, "etc"), "");
    expect(write).toThrow(`${at("/etc")}: is not a directory; refused, nothing written`);
  });
});

describe("writeOwned: the agent's own secret files (credentials, keys, checkpoint)", () => {
  it("positive control: writes exactly the mode (0600 whatever the umask and an old file's mode), owned by this process, no temp file left", async () => {
    const file = join(root, "credentials.json");
    writeFileSync(file, "old\n", { mode: 0o644 });
    await writeOwned(file, "new\n", 0o600);
    expect(readFileSync(file, "utf8")).toBe("new\n");
    expect(mode(file)).toBe(0o600);
    expect(statSync(file).uid).toBe(process.getuid!());
    expect(readdirSync(root)).toEqual(["credentials.json"]);
  });

  it("a symlink planted at the file pointing outside: refused, the target unchanged", async () => {
    const victim = join(outside, "victim");
    writeFileSync(victim, "original\n", { mode: 0o644 });
    const before = snapshot(outside);
    symlinkSync(victim, join(root, "credentials.json"));
    await expect(writeOwned(join(root, "credentials.json"), "secret\n", 0o600)).rejects.toThrow(UnsafePathError);
    expect(snapshot(outside)).toEqual(before);
    expect(readdirSync(root)).toEqual(["credentials.json"]);
  });

  it("a stale temp file planted (write-file-atomic's name, 0644): untouched, the result 0600", async () => {
    const file = join(root, "enroll-key.json");
    const stale = `${file}.4242`;
    writeFileSync(stale, "stale\n", { mode: 0o644 });
    await writeOwned(file, "key\n", 0o600);
    expect(mode(file)).toBe(0o600);
    expect(readFileSync(stale, "utf8")).toBe("stale\n");
    expect(existsSync(file)).toBe(true);
  });
});
