/**
 * Reads of tools that take one command per process (ovs-ofctl, nft) started
 * in the same turn, run by one `sh -c` one after the other. What a read
 * costs is mostly its process's start: the agent's spawn of a child
 * (execa, a fork of a large process) and the tool's own start; one shell
 * that starts the tools itself pays the agent's part once. Each command's
 * stdout is followed by `MARK STATUS` (printf, right after its last byte),
 * so splitting gives each command's stdout exactly as it prints it alone
 * and its exit status; stderr is dropped (a failed read runs again alone,
 * for its own message). Every word is single-quoted: the shell runs the
 * argv as given, it parses nothing of it.
 */

/** ovs-ofctl subcommands that only read and may share the shell. */
const OFCTL_READS: ReadonlySet<string> = new Set(["dump-flows", "dump-meters", "dump-groups"]);
/** nft's read-only listings (`nft [-j] [-t] list ruleset|tables|table FAMILY NAME`). */
const NFT_LIST = /^(ruleset|tables|table [a-z0-9]+ [A-Za-z0-9_.-]+)$/;
/** Words taken as they are (anything else: not batched, the read runs alone). */
const PLAIN = /^[A-Za-z0-9_.:=/@,+-]+$/;

/**
 * The batch a read may join (one per runner turn), or undefined when the
 * argv is not such a read: `ovs-ofctl [-O VERSION] dump-flows|dump-meters|
 * dump-groups TARGET [ARGS]`, or an nft listing with only -j/-t before it.
 */
export function shBatchKey(argv: readonly string[]): string | undefined {
  if (!argv.every((a) => PLAIN.test(a))) return undefined;
  if (argv[0] === "ovs-ofctl") {
    const sub = argv.slice(1).find((a) => !a.startsWith("-") && !/^OpenFlow1[0-5]$/.test(a));
    return sub !== undefined && OFCTL_READS.has(sub) ? "sh" : undefined;
  }
  if (argv[0] === "nft") {
    const at = argv.indexOf("list");
    if (at < 1 || !argv.slice(1, at).every((a) => a === "-j" || a === "-t")) return undefined;
    return NFT_LIST.test(argv.slice(at + 1).join(" ")) ? "sh" : undefined;
  }
  return undefined;
}

const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;

/** The one `sh -c` argv running each read in order, its stdout then `MARK STATUS` on a line of its own. */
export function shBatchArgv(reads: readonly (readonly string[])[], marker: string): string[] {
  const script = reads.map((r) => `${r.map(quote).join(" ")} 2>/dev/null; printf '%s %d\\n' '${marker}' "$?"`).join("\n");
  return ["sh", "-c", script];
}

/**
 * Each command's stdout from the batch's, in order, or undefined for a
 * command that exited non-zero (its caller runs it alone for its own exit
 * code and message); undefined altogether when the marks do not split it
 * into exactly as many parts.
 */
export function splitShBatch(stdout: string, count: number, marker: string): (string | undefined)[] | undefined {
  const out: (string | undefined)[] = [];
  const mark = new RegExp(`${marker.replace(/[^A-Za-z0-9]/g, "\\$&")} (\\d+)\\n`, "g");
  let from = 0;
  for (const m of stdout.matchAll(mark)) {
    if (out.length === count) return undefined;
    out.push(m[1] === "0" ? stdout.slice(from, m.index) : undefined);
    from = m.index + m[0].length;
  }
  return out.length === count && from === stdout.length ? out : undefined;
}
