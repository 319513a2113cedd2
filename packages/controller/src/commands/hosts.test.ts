import { describe, expect, it } from "vitest";
import type { HostStatus } from "../store/status.ts";
import { hostsRow, oneLine, statusDetails } from "./hosts.ts";

// Text an agent reports (a corrective change's id, field, before and after,
// a warning's id and message, an enrollment's reason and claimed hostname)
// reaches the operator's terminal through these formatters: a CR, an escape
// sequence (CSI, OSC), BEL or a bidi override in it must show as a visible
// escape and never start a line, clear one or drive the terminal.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const at = new Date().toISOString();

function details(text: string): string[] {
  return statusDetails({
    corrective: { count: 1, last: { id: `ovs-bridge[br-alpha]${text}`, at, corrective: true, changes: [{ field: `external_ids${text}`, before: `x${text}`, after: `\u202e${text}` }] } },
    warnings: [{ id: `foreign-drop${text}`, message: `all fine${text}` }],
  } as unknown as Pick<HostStatus, "corrective" | "warnings">);
}

describe("status and hosts output: agent-reported text", () => {
  const forged = "\r\x1b[2Khv9              approved     0s ago     ok\x1b]0;pwned\x07\x1b[31mFORGED\x1b[0m\u2066";

  it("prints one line per item with every control and bidi character escaped", () => {
    const lines = details(forged);
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toMatch(UNSAFE);
      expect(line.split("\n")).toHaveLength(1);
    }
    expect(lines[0]).toContain("ovs-bridge[br-alpha]\\r\\x1b[2Khv9");
    expect(lines[0]).toContain("\\u{202e}");
    expect(lines[1]).toMatch(/^warning foreign-drop\\r\\x1b\[2Khv9 .*…: all fine\\r\\x1b\[2Khv9 .*pwned\\x07\\x1b\[31mFORGED\\x1b\[0m\\u\{2066\}$/);
  });

  it("escapes a host's reason and claimed hostname in netfleet hosts", () => {
    const row = hostsRow({ host: "hv1", inventory: true, state: "pending", reason: `new key${forged}`, matchedBy: "key", claimedName: `hv2${forged}`, lastSeen: null });
    expect(row).not.toMatch(UNSAFE);
    expect(row).toContain("new key\\r\\x1b[2Khv9");
    expect(row).toContain("claims hv2\\r\\x1b[2K");
  });

  it("prints plain values unchanged (control)", () => {
    expect(details("")).toEqual([expect.stringMatching(/^last repaired ovs-bridge\[br-alpha\] \d+s ago \(.+\): external_ids x → \\u\{202e\}$/), "warning foreign-drop: all fine"]);
    expect(oneLine("fail_mode standalone → secure", 60)).toBe("fail_mode standalone → secure");
    expect(hostsRow({ host: "hv1", inventory: false, state: "pending", reason: "new key", matchedBy: null, claimedName: "hv2", lastSeen: null })).toBe(
      `${"hv1".padEnd(16)} ${"pending".padEnd(12)} ${"-".padEnd(9)} ${"never".padEnd(10)} not in inventory; new key; claims hv2`,
    );
    expect(oneLine("a\nb\tc", 60)).toBe("a ⏎ b\tc");
  });
});

describe("hosts token --out", () => {
  it("writes the host token 0600 with O_EXCL: never over an existing file or through a planted link", async () => {
    const { mkdtemp, readFile, rm, stat, symlink, writeFile } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { memoryOutput } = await import("../output.ts");
    const { ControllerHome } = await import("../store/home.ts");
    const { hostsTokenCommand } = await import("./hosts.ts");
    const dir = await mkdtemp(join(tmpdir(), "enroll-out-"));
    try {
      const stateDir = join(dir, "state");
      await new ControllerHome(stateDir).secrets("lab");
      const file = join(dir, "hv1.token");
      const out = memoryOutput(false);
      expect(await hostsTokenCommand({ stateDir, host: "hv1", ttlMs: 3600_000, outFile: file }, out)).toBe(0);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const first = await readFile(file, "utf8");
      expect(first).toMatch(/^nfh1\.[^.]+\.hv1\./);
      expect(out.stdout.join("\n")).not.toContain(first.trim());
      // Again: refused, the file unchanged.
      const again = memoryOutput(false);
      expect(await hostsTokenCommand({ stateDir, host: "hv1", ttlMs: 3600_000, outFile: file }, again)).toBe(1);
      expect(again.stderr.join("\n")).toMatch(/exists \(or is a link\); not overwritten/);
      expect(await readFile(file, "utf8")).toBe(first);
      // A link planted at the path (to a file another user could read): refused, its target untouched.
      const target = join(dir, "elsewhere");
      await writeFile(target, "");
      await symlink(target, join(dir, "link.token"));
      expect(await hostsTokenCommand({ stateDir, host: "hv1", ttlMs: 3600_000, outFile: join(dir, "link.token") }, memoryOutput(false))).toBe(1);
      expect(await readFile(target, "utf8")).toBe("");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
