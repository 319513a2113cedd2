/**
 * Several `ip -json` reads of one pass in one ip process: `ip -batch -`
 * (ip(8) -batch) runs one command per line with the global options given
 * once, over one netlink socket. With -json each command prints its whole
 * answer as one line (a JSON array, then a newline), so the batch's stdout
 * is every command's own output in order (lab capture: identical bytes).
 */

/** Global options a batchable read may carry (the same ones for the whole batch). */
const GLOBAL: ReadonlySet<string> = new Set(["-json", "-j", "-details", "-d"]);
/** Objects and verbs that only read. */
const OBJECTS: ReadonlySet<string> = new Set(["link", "addr", "address", "route"]);
/** Words ip's batch line splitter takes as they are. */
const PLAIN = /^[A-Za-z0-9_.:/@-]+$/;

/** The key (`ip` and its global options) a read may be batched under; undefined when it is not a plain `ip -json OBJECT show ...`. */
export function ipBatchKey(argv: readonly string[]): string | undefined {
  if (argv[0] !== "ip") return undefined;
  let i = 1;
  while (i < argv.length && GLOBAL.has(argv[i]!)) i++;
  const opts = argv.slice(1, i);
  if (!opts.includes("-json") && !opts.includes("-j")) return undefined;
  if (!OBJECTS.has(argv[i] ?? "") || argv[i + 1] !== "show" || !argv.slice(i).every((a) => PLAIN.test(a))) return undefined;
  // -j is -json, -d is -details (ip(8)): the same batch.
  return JSON.stringify([...new Set(opts.map((o) => (o === "-j" ? "-json" : o === "-d" ? "-details" : o)))].sort());
}

/** The one `ip OPTIONS -batch -` command and its stdin (one read per line). */
export function ipBatchCommand(reads: readonly (readonly string[])[]): { argv: string[]; stdin: string } {
  const first = reads[0]!;
  let i = 1;
  while (i < first.length && GLOBAL.has(first[i]!)) i++;
  const lines = reads.map((r) => {
    let j = 1;
    while (j < r.length && GLOBAL.has(r[j]!)) j++;
    return r.slice(j).join(" ");
  });
  return { argv: ["ip", ...first.slice(1, i), "-batch", "-"], stdin: lines.join("\n") + "\n" };
}

/** Each read's stdout (its line, newline kept); undefined unless there is exactly one line per read (then each runs alone). */
export function splitIpBatch(stdout: string, count: number): string[] | undefined {
  if (!stdout.endsWith("\n")) return undefined;
  const lines = stdout.slice(0, -1).split("\n");
  return lines.length === count ? lines.map((l) => l + "\n") : undefined;
}
