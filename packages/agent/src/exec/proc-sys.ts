/**
 * `sysctl -n NAME` answered from /proc/sys (sysctl(8): NAME's dots are the
 * path's slashes under /proc/sys; -n prints the file's content as it is).
 * A file read instead of a process; sysctl itself runs when the file cannot
 * be read, so its message stays the error.
 */

const NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/;

/** The /proc/sys path `sysctl -n NAME` reads; undefined for any other sysctl argv. */
export function sysctlReadPath(argv: readonly string[]): string | undefined {
  if (argv.length !== 3 || argv[0] !== "sysctl" || argv[1] !== "-n" || !NAME.test(argv[2]!)) return undefined;
  return `/proc/sys/${argv[2]!.replaceAll(".", "/")}`;
}
