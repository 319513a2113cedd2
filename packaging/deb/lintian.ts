/**
 * lintian(1) on a built package, where lintian is installed.
 */
import { spawnSync } from "node:child_process";

/**
 * The error and warning lines lintian prints for `deb` (`E: ...`, `W: ...`;
 * info, pedantic and overridden tags are not counted: lintian's default
 * `--fail-on error,warning` set). Empty: clean.
 * @throws Error when lintian is not installed (Debian package lintian) or cannot read the file.
 */
export function lintian(deb: string): string[] {
  const r = spawnSync("lintian", ["--no-tag-display-limit", deb], { encoding: "utf8", timeout: 600_000 });
  if (r.error) throw new Error(`lintian: ${(r.error as NodeJS.ErrnoException).code === "ENOENT" ? "not installed (Debian package lintian)" : r.error.message}`);
  const lines = `${r.stdout}${r.stderr}`.split("\n").filter((l) => /^[EW]: /.test(l));
  if (r.status !== 0 && lines.length === 0) throw new Error(`lintian ${deb}: exit ${r.status}: ${`${r.stdout}${r.stderr}`.trim()}`);
  return lines;
}
