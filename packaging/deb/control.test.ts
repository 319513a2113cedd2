import { describe, expect, it } from "vitest";
import { changelogText, controlText, copyrightText, md5sumsText, rfc5322, type PackageMeta } from "./control.ts";
import { manPage } from "./manpage.ts";

const meta: PackageMeta = {
  name: "netfleet-agent",
  version: "0.1.0",
  architecture: "all",
  section: "net",
  depends: ["netfleet-node (>= 22.18)", "openvswitch-switch"],
  recommends: ["libvirt-daemon-system | libvirt-daemon"],
  summary: "netfleet host agent",
  description: "First paragraph, long enough that it has to be folded at seventy-eight columns by the writer of the field.\n\nSecond paragraph.",
  installedKiB: 3001,
};

describe("control texts (deb-control(5), deb-md5sums(5), deb-changelog(5))", () => {
  it("writes the fields in order, folds the long description at 78 columns with ' .' between paragraphs", () => {
    const text = controlText(meta);
    expect(text.split("\n").slice(0, 7)).toEqual([
      "Package: netfleet-agent",
      "Version: 0.1.0",
      "Architecture: all",
      "Maintainer: netfleet developers <netfleet@lists.netfleet.dev>",
      "Installed-Size: 3001",
      "Depends: netfleet-node (>= 22.18), openvswitch-switch",
      "Recommends: libvirt-daemon-system | libvirt-daemon",
    ]);
    const long = text.slice(text.indexOf("Description: ")).split("\n").slice(1).filter(Boolean);
    expect(long).toEqual([
      " First paragraph, long enough that it has to be folded at seventy-eight columns",
      " by the writer of the field.",
      " .",
      " Second paragraph.",
    ]);
    expect(long.every((l) => l.length <= 79)).toBe(true);
    expect(text.endsWith("\n")).toBe(true);
  });

  it("refuses a name, version or summary that breaks Policy 5.6, naming the field", () => {
    expect(() => controlText({ ...meta, name: "Netfleet" })).toThrow(/package name "Netfleet"/);
    expect(() => controlText({ ...meta, version: "v1" })).toThrow(/package version "v1"/);
    expect(() => controlText({ ...meta, summary: "x".repeat(80) })).toThrow(/summary must be one line under 80/);
  });

  it("md5sums: sorted, two spaces, no leading slash", () => {
    const sums = new Map([["/usr/bin/b", "b".repeat(32)], ["/opt/a", "a".repeat(32)]]);
    expect(md5sumsText(sums)).toBe(`${"a".repeat(32)}  opt/a\n${"b".repeat(32)}  usr/bin/b\n`);
  });

  it("changelog and its date as date -R -u prints them; copyright stanzas with blank lines as ' .'", () => {
    expect(rfc5322(new Date(Date.UTC(2026, 10, 30, 9, 5, 7)))).toBe("Mon, 30 Nov 2026 09:05:07 +0000");
    expect(changelogText("netfleet", "0.1.0", "Mon, 30 Nov 2026 09:05:07 +0000", ["Built."])).toBe(
      "netfleet (0.1.0) unstable; urgency=medium\n\n  * Built.\n\n -- netfleet developers <netfleet@lists.netfleet.dev>  Mon, 30 Nov 2026 09:05:07 +0000\n",
    );
    expect(copyrightText("x", [["*", "2026 me", "MIT", "line one\n\nline two"]])).toContain("Files: *\nCopyright: 2026 me\nLicense: MIT\n line one\n .\n line two\n");
  });

  it("man page: the help as a no-fill block, a leading dot or quote escaped, hyphens and backslashes escaped", () => {
    const page = manPage("netfleet-agent", "0.1.0", "the agent", "Usage: netfleet-agent [options]\n.hidden\n'quoted\na\\b", "2026-11-30", ["netfleet(1)"]);
    expect(page.split("\n")).toEqual([
      '.TH NETFLEET\\-AGENT 1 "2026-11-30" "netfleet-agent 0.1.0" "User Commands"',
      ".SH NAME",
      "netfleet\\-agent \\- the agent",
      ".SH DESCRIPTION",
      "Each command has its own help: \\fBnetfleet\\-agent help\\fR \\fIcommand\\fR.",
      ".PP",
      ".nf",
      "Usage: netfleet\\-agent [options]",
      "\\&.hidden",
      "\\&'quoted",
      "a\\eb",
      ".fi",
      ".SH SEE ALSO",
      "\\fBnetfleet\\fR(1)",
      "",
    ]);
  });
});
