import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { formatProblem, InventoryError, loadInventory, quoteToken } from "@netfleet/shared";
import { INVENTORY_FILE_MAX_BYTES } from "../../packages/shared/src/inventory/files.ts";
import { problemLines } from "../../packages/controller/src/commands/validate.ts";

// Attacks on the files of a site folder, each beside its positive control:
// what a careless or hostile contributor to an inventory repository can put
// there (symlinks out, FIFOs, devices, huge or binary files, names and keys
// holding terminal escapes), looked for where it would land: the problem
// lines, and the real CLI's exit code, stdout and stderr.

const REPO = resolve(import.meta.dirname, "..", "..");
const BASELINE = join(REPO, "test/unit/bad-inventories/_baseline");
const scratch = mkdtempSync(join(tmpdir(), "nf-files-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let sites = 0;
/** A copy of the baseline site (valid) in the scratch folder, plus `extra` files. */
function site(extra: Record<string, string | Buffer> = {}): string {
  const dir = join(scratch, `site-${++sites}`);
  cpSync(BASELINE, dir, { recursive: true });
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

/** The formatted problems of `dir` (file names relative to `cwd`, by default `dir`), or [] when it loads. */
function problems(dir: string, cwd = dir): string[] {
  try {
    loadInventory(dir, { cwd });
    return [];
  } catch (err) {
    if (err instanceof InventoryError) return err.problems.map(formatProblem);
    throw err;
  }
}

/** Runs `netfleet validate DIR` as its own process from an empty working folder (bounded: killed after 60 s). */
function validateCli(dir: string, ...flags: string[]): { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; cwdAfter: string[] } {
  const cwd = mkdtempSync(join(scratch, "cwd-"));
  const r = spawnSync("sh", [join(REPO, "scripts/node.sh"), join(REPO, "packages/controller/src/cli.ts"), "validate", ...flags, dir], {
    cwd,
    encoding: "utf8",
    timeout: 60_000,
    maxBuffer: 64 * 2 ** 20,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, cwdAfter: readdirSync(cwd) };
}

function expectCleanRefusal(r: ReturnType<typeof validateCli>): void {
  expect(r.code).toBe(2);
  expect(`${r.stdout}${r.stderr}`).not.toMatch(/^ {4}at /m); // no stack trace
  expect(r.cwdAfter).toEqual([]); // nothing written
}

function listing(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).map((e) => `${e.name}:${e.isFile() ? "f" : e.isDirectory() ? "d" : e.isSymbolicLink() ? "l" : "o"}`).sort();
}

describe("site folder entries", () => {
  const marker = `nf-secret-${process.pid}-${Date.now()}`;
  const secret = join(scratch, "secret.txt");
  writeFileSync(secret, `root:${marker}:19000:0:99999:7:::\n${marker}: leaked\n`);

  it("a symlink to a file outside the site folder is refused; its content and target appear nowhere", { timeout: 60_000 }, () => {
    const dir = site();
    symlinkSync(secret, join(dir, "x.yaml"));
    const lines = problems(dir);
    expect(lines).toEqual(["x.yaml:1:1: (document): symlink to a file outside the site folder is refused: only regular files in the site folder are read (copy the file into the folder)"]);
    expect(lines.join("\n")).not.toContain(marker);
    expect(lines.join("\n")).not.toContain(secret);

    const before = listing(dir);
    const r = validateCli(dir);
    expectCleanRefusal(r);
    expect(r.stderr).toContain("x.yaml:1:1: (document): symlink to a file outside the site folder is refused");
    expect(r.stdout + r.stderr).not.toContain(marker);
    expect(r.stdout + r.stderr).not.toContain(secret);
    const json = validateCli(dir, "--json");
    expect(json.code).toBe(2);
    expect(json.stdout + json.stderr).not.toContain(marker);
    expect(listing(dir)).toEqual(before);
    expect(readFileSync(secret, "utf8")).toContain(marker);
  });

  it("control: a symlink inside the site folder to a regular file there loads", () => {
    const dir = site();
    mkdirSync(join(dir, "parts"));
    writeFileSync(join(dir, "parts", "gamma.txt"), "networks:\n  gamma:\n    vlan: 103\n    cidr: 10.3.0.0/24\n    gateway: 10.3.0.1\n    egress: open\n");
    symlinkSync(join("parts", "gamma.txt"), join(dir, "gamma.yaml"));
    expect(problems(dir)).toEqual([]);
    expect(loadInventory(dir).networks.map((n) => n.name)).toContain("gamma");
  });

  it("a symlink chain that leaves the folder through a link inside it is refused", () => {
    const dir = site();
    symlinkSync(secret, join(dir, "hop"));
    symlinkSync("hop", join(dir, "x.yaml"));
    const lines = problems(dir);
    expect(lines).toEqual(["x.yaml:1:1: (document): symlink to a file outside the site folder is refused: only regular files in the site folder are read (copy the file into the folder)"]);
    expect(lines.join("\n")).not.toContain(marker);
  });

  it("a FIFO is refused without blocking (through the CLI, so a hang would be a killed process, not a stuck suite)", { timeout: 60_000 }, () => {
    const dir = site();
    const made = spawnSync("mkfifo", [join(dir, "pipe.yaml")], { timeout: 10_000 });
    expect(made.status).toBe(0);
    const r = validateCli(dir);
    expect(r.signal).toBeNull(); // not killed by the timeout
    expectCleanRefusal(r);
    const out = r.stderr.split("\n").filter((l) => l !== "");
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/pipe\.yaml:1:1: \(document\): this is a FIFO \(named pipe\), not a regular file: only regular files in the site folder are read$/);
    // In-process only once the CLI has shown it does not block.
    expect(problems(dir)).toEqual(["pipe.yaml:1:1: (document): this is a FIFO (named pipe), not a regular file: only regular files in the site folder are read"]);
  });

  it("a symlink to /dev/zero is refused, and so is one inside the folder to a FIFO", { timeout: 60_000 }, () => {
    const dir = site();
    symlinkSync("/dev/zero", join(dir, "zero.yaml"));
    spawnSync("mkfifo", [join(dir, "pipe")], { timeout: 10_000 });
    symlinkSync("pipe", join(dir, "via-pipe.yaml"));
    const r = validateCli(dir);
    expect(r.signal).toBeNull();
    expectCleanRefusal(r);
    expect(problems(dir)).toEqual([
      "via-pipe.yaml:1:1: (document): symlink to a FIFO (named pipe) is refused: only regular files in the site folder are read",
      "zero.yaml:1:1: (document): symlink to a file outside the site folder is refused: only regular files in the site folder are read (copy the file into the folder)",
    ]);
  });

  it("a directory named *.yaml, a link to a directory and a dangling link are refused, each saying what it is", () => {
    const dir = site();
    mkdirSync(join(dir, "old.yaml"));
    symlinkSync(".", join(dir, "self.yaml"));
    symlinkSync("missing.yaml", join(dir, "dangling.yaml"));
    expect(problems(dir)).toEqual([
      "dangling.yaml:1:1: (document): broken symlink (its target cannot be resolved) is refused",
      "old.yaml:1:1: (document): this is a directory, not a regular file: only regular files in the site folder are read",
      "self.yaml:1:1: (document): symlink to a directory is refused: only regular files in the site folder are read",
    ]);
  });

  it("a file ending in .YAML, .Yml or .yAmL is refused, not skipped; control: the same file as .yaml or .yml loads", () => {
    const gamma = "networks:\n  gamma:\n    vlan: 103\n    cidr: 10.3.0.0/24\n    gateway: 10.3.0.1\n    egress: open\n";
    expect(problems(site({ "gamma.YAML": gamma, "delta.Yml": "", "x.yAmL": "" }))).toEqual([
      'delta.Yml:1:1: (document): file name ends in ".Yml": rename to .yml: only *.yaml and *.yml files are read',
      'gamma.YAML:1:1: (document): file name ends in ".YAML": rename to .yaml: only *.yaml and *.yml files are read',
      'x.yAmL:1:1: (document): file name ends in ".yAmL": rename to .yaml: only *.yaml and *.yml files are read',
    ]);
    expect(loadInventory(site({ "gamma.yaml": gamma })).networks.map((n) => n.name)).toContain("gamma");
    expect(loadInventory(site({ "gamma.yml": gamma })).networks.map((n) => n.name)).toContain("gamma");
  });

  it("control: the site folder itself may be a symlink (the operator's own argument); a site folder that is a file is refused", () => {
    const dir = site();
    writeFileSync(join(dir, "gamma.txt"), "networks:\n  gamma:\n    vlan: 103\n    cidr: 10.3.0.0/24\n    gateway: 10.3.0.1\n    egress: open\n");
    symlinkSync("gamma.txt", join(dir, "gamma.yaml")); // inside the folder the link points to
    const link = join(scratch, `link-${sites}`);
    symlinkSync(dir, link);
    expect(loadInventory(link).networks.map((n) => n.name)).toContain("gamma");
    expect(problems(join(dir, "site.yaml"), dir)).toEqual(["site.yaml:1:1: (document): cannot read inventory folder: it is a regular file, not a directory"]);
  });
});

describe("file size and encoding", () => {
  const siteHead = "# padding follows\n";

  it("a file of the cap plus one byte is refused with its size and the cap; a valid file of exactly the cap loads", () => {
    const pad = (n: number) => Buffer.concat([Buffer.from(siteHead), Buffer.alloc(n - siteHead.length - 1, "#"), Buffer.from("\n")]);
    const over = site({ "big.yaml": pad(INVENTORY_FILE_MAX_BYTES + 1) });
    expect(problems(over)).toEqual([`big.yaml:1:1: (document): file is ${INVENTORY_FILE_MAX_BYTES + 1} bytes, more than the ${INVENTORY_FILE_MAX_BYTES} bytes (4 MiB) an inventory file may hold; split it into several files`]);
    const at = site({ "big.yaml": pad(INVENTORY_FILE_MAX_BYTES) });
    expect(problems(at)).toEqual([]);
  });

  it("bytes that are not UTF-8 are refused at their line and column; valid multi-byte text loads", () => {
    const bad = site({ "notes.yaml": Buffer.concat([Buffer.from("# ok\n# café "), Buffer.from([0xff, 0x41]), Buffer.from("\n")]) });
    expect(problems(bad)).toEqual(["notes.yaml:2:8: (document): not valid UTF-8 (byte 0xff): inventory files are UTF-8 text"]);
    const truncated = site({ "notes.yaml": Buffer.concat([Buffer.from("# x\n"), Buffer.from([0xe2, 0x82])]) });
    expect(problems(truncated)).toEqual(["notes.yaml:2:1: (document): not valid UTF-8 (byte 0xe2): inventory files are UTF-8 text"]);
    const overlong = site({ "notes.yaml": Buffer.from([0x23, 0xc0, 0xaf, 0x0a]) });
    expect(problems(overlong)).toEqual(["notes.yaml:1:2: (document): not valid UTF-8 (byte 0xc0): inventory files are UTF-8 text"]);
    const good = site({ "notes.yaml": "# ok\n# café ☃ 𝄞 Zürich\n" });
    expect(problems(good)).toEqual([]);
  });

  it("a NUL byte is refused at its line and column", () => {
    const dir = site({ "notes.yaml": Buffer.from("# a\n#\0b\n") });
    expect(problems(dir)).toEqual(["notes.yaml:2:2: (document): NUL byte in the file: inventory files are UTF-8 text"]);
  });
});

describe("messages are one line and show no more than the offending token", () => {
  const evil = "k\n\x1b[2J\u202e";
  const shown = "k\\n\\x1b[2J\\u{202e}";

  it("a file name and a key holding a newline, an ANSI escape and a bidi override print as one line with the escapes visible", { timeout: 60_000 }, () => {
    const name = `n\nl\x1b[2J\u202e.yaml`;
    const dir = site({ [name]: `"k\\n\\e[2J\\u202e": 1\n` });
    const lines = problems(dir);
    expect(lines).toEqual([`n\\nl\\x1b[2J\\u{202e}.yaml:1:1: ${shown}: unknown key "${shown}"`]);
    for (const line of lines) expect(line).not.toMatch(/[\n\r\x1b\u202e]/);

    const r = validateCli(dir);
    expectCleanRefusal(r);
    const out = r.stderr.split("\n").filter((l) => l !== "");
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(new RegExp(`n\\\\nl\\\\x1b\\[2J\\\\u\\{202e\\}\\.yaml:1:1: k\\\\n\\\\x1b\\[2J\\\\u\\{202e\\}: unknown key "k\\\\n\\\\x1b\\[2J\\\\u\\{202e\\}"$`));
    expect(r.stdout + r.stderr).not.toMatch(/[\x1b\u202e]/);
    const json = validateCli(dir, "--json");
    expect(json.stdout).not.toMatch(/[\x1b\u202e]/);
    expect((JSON.parse(json.stdout) as { problems: { path: string }[] }).problems[0]!.path).toBe(evil);
  });

  it("control: an ordinary unknown key reads as before", () => {
    const dir = site({ "extra.yaml": "hots: {}\n" });
    expect(problems(dir)).toEqual(['extra.yaml:1:1: hots: unknown key "hots" (did you mean "hosts"?)']);
    expect(quoteToken("hosts")).toBe(JSON.stringify("hosts"));
    expect(quoteToken('a"b\\c')).toBe(JSON.stringify('a"b\\c'));
  });

  it("a long key is shown as its first 60 characters, in the message and in the path", () => {
    const key = `z${"q".repeat(1000)}`; // YAML caps an implicit key at 1024 characters
    const dir = site({ "extra.yaml": `${key}: 1\n` });
    const short = `z${"q".repeat(59)}`;
    expect(problems(dir)).toEqual([`extra.yaml:1:1: ${short}...: unknown key "${short}"...`]);
  });

  it("formatProblem escapes C0, DEL, C1, U+2028/2029 and bidi isolates; quoteToken counts characters, not UTF-16 units", () => {
    const line = formatProblem({ file: "a\rb", line: 1, col: 1, path: "p\u2028q", message: `m\x7f\x85\u2029\u2066\u2069\t\x00` });
    expect(line).toBe("a\\rb:1:1: p\\u{2028}q: m\\x7f\\x85\\u{2029}\\u{2066}\\u{2069}\\t\\x00");
    expect(formatProblem({ file: line, line: 1, col: 1, path: "", message: "" })).toContain(line); // idempotent: nothing left to escape
    expect(quoteToken("🙂".repeat(60))).toBe(`"${"🙂".repeat(60)}"`);
    expect(quoteToken("🙂".repeat(61))).toBe(`"${"🙂".repeat(60)}"...`);
  });

  it("a YAML error quoting a long token from the file shows 60 characters of it", () => {
    const tag = `!${"t".repeat(5000)}`;
    const dir = site({ "extra.yaml": `site: ${tag} x\n` });
    const lines = problems(dir);
    expect(lines).toEqual([`extra.yaml:1:7: (document): Unresolved tag: ${tag.slice(0, 60)}...`]);
  });

  it("a duplicate key is named (quoted, escaped) where its second occurrence stands; the same key in another mapping is no duplicate", () => {
    const dir = site({ "extra.yaml": `groups:\n  g1:\n    labels:\n      "a\\e": x\n      b: y\n      "a\\e": z\n  g2:\n    labels:\n      "a\\e": x\n` });
    expect(problems(dir)).toEqual(['extra.yaml:6:7: (document): key "a\\x1b" appears twice in this mapping']);
  });

  it("keys that load as the same key are duplicates whatever their YAML type (1 and \"1\", true and \"true\")", () => {
    const dir = site({ "extra.yaml": `groups:\n  g1:\n    labels: {1: a, "1": b}\n  g2:\n    labels: {true: a, "true": b}\n` });
    expect(problems(dir)).toEqual(['extra.yaml:3:20: (document): key "1" appears twice in this mapping', 'extra.yaml:5:23: (document): key "true" appears twice in this mapping']);
  });
});

// No timing assertion: the test timeout bounds these. 20,000 keys load in
// about 1 s on an idle 2-core machine (52 s when parsing was quadratic); the
// timeout leaves room for a machine shared with other test runs.
describe("20,000 keys in one mapping (linear parse)", { timeout: 20_000 }, () => {
  const N = 20_000;
  const labels = Array.from({ length: N }, (_, i) => `      k${i}: v${i}\n`).join("");
  const host = `hosts:\n  hv2:\n    role: vmhost\n    networks: [alpha]\n    address: 10.0.0.12\n    uplink:\n      mode: kernel\n      members: [eth0]\n    labels:\n${labels}`;

  it("loads, every key kept", () => {
    const inventory = loadInventory(site({ "many.yaml": host }));
    const hv2 = inventory.hosts.find((h) => h.name === "hv2")!;
    expect(Object.keys(hv2.labels)).toHaveLength(N);
    expect(hv2.labels[`k${N - 1}`]).toBe(`v${N - 1}`);
  });

  it("one duplicate among them is reported at its line", () => {
    const dir = site({ "many.yaml": `${host}      k7: again\n` });
    expect(problems(dir)).toEqual([`many.yaml:${10 + N}:7: (document): key "k7" appears twice in this mapping`]);
  });

  it("20,000 unknown keys are each reported at their own line; validate prints the first 100 and a count", { timeout: 90_000 }, () => {
    const dir = site({ "many.yaml": Array.from({ length: N }, (_, i) => `u${i}: 1\n`).join("") });
    const lines = problems(dir);
    expect(lines).toHaveLength(N);
    expect(lines[0]).toBe('many.yaml:1:1: u0: unknown key "u0"');
    expect(lines[N - 1]).toBe(`many.yaml:${N}:1: u${N - 1}: unknown key "u${N - 1}"`);
    expect(problemLines([])).toEqual([]);

    const r = validateCli(dir);
    expectCleanRefusal(r);
    const out = r.stderr.split("\n").filter((l) => l !== "");
    expect(out).toHaveLength(101);
    expect(out[99]).toMatch(/many\.yaml:100:1: u99: unknown key "u99"$/);
    expect(out[100]).toBe(`... and ${N - 100} more problems`);
  });
});
