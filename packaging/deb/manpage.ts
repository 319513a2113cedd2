/**
 * A section-1 manual page made from a command's --help text (what
 * help2man does, in a few lines): groff_man(7) with the help as a
 * no-fill block, so `man netfleet` says what `netfleet --help` says.
 */

/** Escapes text for a groff no-fill block: backslashes, and a leading `.` or `'` (which would start a request). */
function roffLine(line: string): string {
  const escaped = line.replace(/\\/g, "\\e").replace(/-/g, "\\-");
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

/**
 * The page's roff source. `name`: the command; `summary`: what it is, one
 * line (the NAME section); `help`: its --help output; `date`: YYYY-MM-DD;
 * `see`: other pages, e.g. ["netfleet-agent(1)"].
 */
export function manPage(name: string, version: string, summary: string, help: string, date: string, see: string[]): string {
  const body = help.trimEnd().split("\n").map(roffLine);
  return [
    `.TH ${name.toUpperCase().replace(/-/g, "\\-")} 1 "${date}" "${name} ${version}" "User Commands"`,
    ".SH NAME",
    `${name.replace(/-/g, "\\-")} \\- ${roffLine(summary)}`,
    ".SH DESCRIPTION",
    `Each command has its own help: \\fB${name.replace(/-/g, "\\-")} help\\fR \\fIcommand\\fR.`,
    ".PP",
    ".nf",
    ...body,
    ".fi",
    ...(see.length ? [".SH SEE ALSO", see.map((s) => `\\fB${s.replace(/\(.*$/, "").replace(/-/g, "\\-")}\\fR${s.slice(s.indexOf("("))}`).join(", ")] : []),
    "",
  ].join("\n");
}
