import { randomBytes } from "node:crypto";

/**
 * Several virsh reads of one pass in one virsh process: virsh(1) runs
 * commands separated by `;` in one argument, over one connection to
 * libvirtd, and carries on after a command fails. Each virsh process costs
 * tens of ms of CPU (its start and the connection), the reads themselves
 * a fraction of that. `echo MARK` between the commands separates their
 * outputs: with -q, virsh's echo prints MARK with no newline, so splitting
 * on MARK gives each command's stdout exactly as it prints it alone.
 */

/** The read-only virsh commands that may share a process. */
const READS: ReadonlySet<string> = new Set(["net-list", "net-dumpxml"]);
/** Words virsh's own command parser takes as they are (no quoting needed). */
const PLAIN = /^[A-Za-z0-9_.:=-]+$/;

/**
 * The connection prefix (`virsh -q -c URI`, as Toolbox.virsh builds it) a
 * read may be batched under, as a key; undefined when the argv is not such
 * a read or holds a word virsh's parser would treat specially.
 */
export function virshBatchKey(argv: readonly string[]): string | undefined {
  if (argv.length < 5 || argv[0] !== "virsh" || argv[1] !== "-q" || argv[2] !== "-c") return undefined;
  if (!READS.has(argv[4]!) || !argv.slice(4).every((a) => PLAIN.test(a))) return undefined;
  return JSON.stringify(argv.slice(0, 4));
}

/** A separator no command prints (random per batch). */
export function batchMarker(): string {
  return `@@netfleet-${randomBytes(6).toString("hex")}@@`;
}

/** The one virsh argv running each read's command in order, `echo MARK` between them. */
export function virshBatchArgv(reads: readonly (readonly string[])[], marker: string): string[] {
  const prefix = reads[0]!.slice(0, 4);
  return [...prefix, reads.map((r) => r.slice(4).join(" ")).join(`; echo ${marker}; `)];
}

/**
 * Each command's stdout from the batch's stdout, in order; undefined when
 * the marks do not split it into as many parts (then each read runs alone).
 * An empty part is a command that printed nothing: it failed (its message
 * went to stderr, mixed with the others'), so the caller runs that one
 * alone to get its own exit code and message.
 */
export function splitVirshBatch(stdout: string, count: number, marker: string): string[] | undefined {
  const parts = stdout.split(marker);
  return parts.length === count ? parts : undefined;
}
