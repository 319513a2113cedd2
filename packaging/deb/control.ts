/**
 * The texts inside a binary package's control archive and its doc dir,
 * pure: deb-control(5) (`DEBIAN/control`), deb-md5sums(5), deb-conffiles(5),
 * and the changelog and copyright files Debian Policy 12.5 and 12.7 ask
 * for in /usr/share/doc/<package>.
 */

/** One binary package's control fields (deb-control(5)). */
export interface PackageMeta {
  /** Package name: lower case letters, digits, `+ - .` (Policy 5.6.1). */
  name: string;
  /** Native version (no Debian revision): upstream digits and `. + ~`. */
  version: string;
  /** `all`, or a Debian architecture (`dpkg --print-architecture`). */
  architecture: string;
  section: string;
  /** Relations, each one entry (alternatives joined with ` | `). */
  depends: string[];
  recommends?: string[];
  /** One line, under 80 characters. */
  summary: string;
  /** The long description: paragraphs separated by blank lines. */
  description: string;
  /** Installed-Size in KiB (deb-control(5): an estimate of the disk space used). */
  installedKiB: number;
}

export const MAINTAINER = "netfleet developers <netfleet@lists.netfleet.dev>";
export const HOMEPAGE = "https://github.com/netfleet/netfleet";

/**
 * `DEBIAN/control`. The long description is folded at 78 columns, each line
 * indented by one space and blank lines written as ` .` (deb-control(5)).
 * @throws Error naming the field when the name, version or summary breaks Policy 5.6.
 */
export function controlText(m: PackageMeta): string {
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(m.name)) throw new Error(`package name ${JSON.stringify(m.name)}: want lower case letters, digits and + - .`);
  if (!/^[0-9][A-Za-z0-9.+~]*$/.test(m.version)) throw new Error(`package version ${JSON.stringify(m.version)}: want a native version (digits first; letters, digits, . + ~)`);
  if (m.summary.length > 79 || m.summary.includes("\n")) throw new Error(`package ${m.name}: the summary must be one line under 80 characters`);
  const lines = [
    `Package: ${m.name}`,
    `Version: ${m.version}`,
    `Architecture: ${m.architecture}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${m.installedKiB}`,
    ...(m.depends.length ? [`Depends: ${m.depends.join(", ")}`] : []),
    ...(m.recommends?.length ? [`Recommends: ${m.recommends.join(", ")}`] : []),
    `Section: ${m.section}`,
    "Priority: optional",
    `Homepage: ${HOMEPAGE}`,
    `Description: ${m.summary}`,
    ...longDescription(m.description),
  ];
  return lines.join("\n") + "\n";
}

function longDescription(text: string): string[] {
  const out: string[] = [];
  for (const para of text.trim().split(/\n\s*\n/)) {
    if (out.length) out.push(" .");
    let line = "";
    for (const word of para.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > 78) {
        out.push(` ${line}`);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    if (line) out.push(` ${line}`);
  }
  return out;
}

/** deb-md5sums(5): `<md5>  <path without leading slash>` per regular file, sorted by path. */
export function md5sumsText(sums: Map<string, string>): string {
  return [...sums.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([path, md5]) => `${md5}  ${path.replace(/^\//, "")}\n`)
    .join("");
}

/**
 * A native package's /usr/share/doc/<pkg>/changelog (gzip it: Policy 12.7),
 * in the format of deb-changelog(5). `date` is RFC 5322 (`date -R`).
 */
export function changelogText(name: string, version: string, date: string, entries: string[]): string {
  return `${name} (${version}) unstable; urgency=medium\n\n${entries.map((e) => `  * ${e}\n`).join("")}\n -- ${MAINTAINER}  ${date}\n`;
}

/** RFC 5322 date of `when` in UTC, as `date -R -u` prints it (deb-changelog(5) wants this form). */
export function rfc5322(when: Date): string {
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const p = (n: number) => String(n).padStart(2, "0");
  return `${days[when.getUTCDay()]}, ${p(when.getUTCDate())} ${months[when.getUTCMonth()]} ${when.getUTCFullYear()} ${p(when.getUTCHours())}:${p(when.getUTCMinutes())}:${p(when.getUTCSeconds())} +0000`;
}

/**
 * /usr/share/doc/<pkg>/copyright in the machine-readable format
 * (https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/).
 * `files`: [glob, copyright holder, license name, license text] per stanza.
 */
export function copyrightText(upstreamName: string, files: [string, string, string, string][]): string {
  const stanzas = [`Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: ${upstreamName}\nSource: ${HOMEPAGE}\n`];
  for (const [glob, holder, license, text] of files) {
    const body = text
      .trim()
      .split("\n")
      .map((l) => (l.trim() === "" ? " ." : ` ${l}`))
      .join("\n");
    stanzas.push(`Files: ${glob}\nCopyright: ${holder}\nLicense: ${license}\n${body}\n`);
  }
  return stanzas.join("\n");
}
