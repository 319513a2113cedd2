import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { ipBatchCommand, ipBatchKey, splitIpBatch } from "./ip-batch.ts";
import { sysctlReadPath } from "./proc-sys.ts";
import { ovsdbListRead, readOvsdbLists } from "./ovsdb-socket.ts";
import { batchMarker, splitVirshBatch, virshBatchArgv, virshBatchKey } from "./virsh-batch.ts";

/** Steps the agent performs itself rather than through a program. */
export type Builtin =
  | { op: "write-file"; path: string; content: string }
  | { op: "remove-file"; path: string }
  | { op: "wait-exit"; pid: number; timeoutMs: number };

/** One command: always an argv array, never a shell string. */
export interface Command {
  /** Done in-process by the engine; `argv` then only describes it. */
  builtin?: Builtin;
  argv: string[];
  /** Fed on standard input (e.g. `ip -batch -`, `nft -f -`, `ovs-ofctl --bundle add-flows BRIDGE -`). */
  stdin?: string;
  /** False for commands that only read. Check mode never runs a mutating command. */
  mutating: boolean;
}

/** What a command did: exit code, stdout, stderr. */
export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

/** Runs commands (argv arrays) on the host; the engine's only way to touch it. */
export interface Runner {
  /** Runs the command; throws ExecError unless it exits 0 or `allowFailure` is set. */
  run(command: Command, options?: { allowFailure?: boolean }): Promise<RunResult>;
}

/** A command that failed: the argv, its exit code and what it printed on stderr. */
export class ExecError extends Error {
  readonly argv: string[];
  readonly exitCode: number;
  readonly stderr: string;
  constructor(argv: string[], exitCode: number, stderr: string, options?: { cause?: unknown }) {
    super(`${argv.join(" ")} exited ${exitCode}${stderr.trim() ? `: ${stderr.trim().split("\n").slice(-3).join(" / ")}` : ""}`, options);
    this.name = "ExecError";
    this.argv = argv;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

/** A command that only reads (safe in check mode). */
export function read(...argv: string[]): Command {
  return { argv, mutating: false };
}

/** A command that changes the host (never run in check mode); `stdin` is fed to it. */
export function mutate(argv: string[], stdin?: string): Command {
  return stdin === undefined ? { argv, mutating: true } : { argv, stdin, mutating: true };
}

/** Writes a file (beside, then renamed into place). */
export function writeFileStep(path: string, content: string): Command {
  return { argv: ["write", path], mutating: true, builtin: { op: "write-file", path, content } };
}

/** Removes a file; one that is already gone is fine. */
export function removeFileStep(path: string): Command {
  return { argv: ["remove", path], mutating: true, builtin: { op: "remove-file", path } };
}

/** A step that waits (up to `timeoutMs`) for process `pid` to exit. */
export function waitExitStep(pid: number, timeoutMs = 5000): Command {
  return { argv: ["wait-exit", String(pid)], mutating: true, builtin: { op: "wait-exit", pid, timeoutMs } };
}

/** Shows a command the way an operator would type it (for plans and logs; never executed). */
export function displayCommand(c: Command): string {
  if (c.builtin?.op === "remove-file") return `# remove ${c.builtin.path}`;
  if (c.builtin?.op === "write-file") return `# write ${c.builtin.path} (${Buffer.byteLength(c.builtin.content)} bytes)\n${c.builtin.content.replace(/\n$/, "")}`;
  if (c.builtin?.op === "wait-exit") return `# wait for pid ${c.builtin.pid} to exit`;
  const quote = (a: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  const line = c.argv.map(quote).join(" ");
  return c.stdin === undefined ? line : `${line} <<EOF\n${c.stdin.replace(/\n$/, "")}\nEOF`;
}

/** How many commands an ExecaRunner keeps in its log (a daemon runs for months). */
const LOG_MAX = 10_000;

/**
 * How reads of one tool share a process: the batch's command, and each
 * read's stdout from the batch's (undefined for a read that failed there:
 * it runs alone; undefined altogether: each runs alone).
 */
interface BatchKind {
  key(argv: readonly string[]): string | undefined;
  command(reads: readonly (readonly string[])[]): { command: Command; split: (stdout: string) => (string | undefined)[] | undefined };
}

/** A batch whose failed commands print nothing (virsh, ip): an empty part is a failed read. */
const emptyIsFailed = (parts: string[] | undefined) => parts?.map((p) => (p.trim() === "" ? undefined : p));

const BATCHES: readonly BatchKind[] = [
  {
    key: virshBatchKey,
    command(reads) {
      const marker = batchMarker();
      return { command: { argv: virshBatchArgv(reads, marker), mutating: false }, split: (out) => emptyIsFailed(splitVirshBatch(out, reads.length, marker)) };
    },
  },
  {
    key: ipBatchKey,
    command(reads) {
      const { argv, stdin } = ipBatchCommand(reads);
      return { command: { argv, stdin, mutating: false }, split: (out) => emptyIsFailed(splitIpBatch(out, reads.length)) };
    },
  },
];

/** One command an ExecaRunner ran; `asked`: the handler's command when it was answered in-process (database socket, /proc/sys). */
export interface RunnerLogEntry {
  command: Command;
  result: RunResult;
  asked?: Command;
}

/** A read waiting for its batch (see virsh-batch.ts, ip-batch.ts). */
interface PendingRead {
  command: Command;
  options: { allowFailure?: boolean };
  resolve: (r: RunResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Runs commands with execa: no shell, a timeout, and a bounded output size
 * (64 MiB). A command without stdin gets none (`stdin: "ignore"`): execa
 * then sets up no input stream, 3.55 -> 2.97 ms of the agent's CPU per
 * command (150 runs of `ip -json route show`, load 7; node:child_process
 * alone: 1.2-1.7 ms, but execa is the dependency chosen for running
 * commands, and its timeout, kill and buffer handling are not ours to keep).
 * Three kinds of reads cost no process of their own:
 * - `ovs-vsctl --format=json -- --columns=... list TABLE ...` is answered
 *   over the database socket (ovsdb-socket.ts: one RFC 7047 transact, the
 *   same text ovs-vsctl prints; ovs-vsctl itself runs when that fails);
 * - `sysctl -n NAME` is read from /proc/sys (proc-sys.ts);
 * - virsh reads, `ip -json ... show` reads with the same options, and
 *   started in the same turn of the event loop (a pass observes its
 *   resources at once) share one process (virsh-batch.ts, ip-batch.ts).
 * The log records what really ran: the ovsdb read as `ovsdb-client
 * transact SOCKET TABLE...` (what it does, by the tool that would), a
 * /proc/sys read as `read PATH`, a batch as its one argv.
 */
export class ExecaRunner implements Runner {
  private readonly timeoutMs: number;
  private readonly env: Record<string, string> | undefined;
  private readonly queues = new Map<string, PendingRead[]>();
  /**
   * Every command run, with its duration: the agent reports them and
   * benchmarks sum them (the last LOG_MAX). `asked` is the command as the
   * handler asked for it when it was answered in-process (its `command`
   * then only describes what was done).
   */
  readonly log: RunnerLogEntry[] = [];

  constructor(options: { timeoutMs?: number; env?: Record<string, string> } = {}) {
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.env = options.env;
  }

  async run(command: Command, options: { allowFailure?: boolean } = {}): Promise<RunResult> {
    if (!command.mutating && command.stdin === undefined && command.builtin === undefined) {
      const ovsdb = ovsdbListRead(command.argv, { ...process.env, ...this.env });
      if (ovsdb) {
        const started = performance.now();
        try {
          const stdout = await readOvsdbLists({ ...ovsdb, timeoutMs: Math.min(ovsdb.timeoutMs, this.timeoutMs) });
          const result = { stdout, stderr: "", exitCode: 0, durationMs: performance.now() - started };
          this.record({ argv: ["ovsdb-client", "transact", `unix:${ovsdb.socket}`, ...ovsdb.tables.map((t) => t.table)], mutating: false }, result, command);
          return result;
        } catch {
          // ovs-vsctl says what is wrong (no server, no such column) in its own words.
        }
      }
      const proc = sysctlReadPath(command.argv);
      if (proc !== undefined) {
        const started = performance.now();
        const stdout = await readFile(proc, "utf8").catch(() => undefined);
        if (stdout !== undefined) {
          const result = { stdout, stderr: "", exitCode: 0, durationMs: performance.now() - started };
          this.record({ argv: ["read", proc], mutating: false }, result, command);
          return result;
        }
      }
      for (const [k, kind] of BATCHES.entries()) {
        const key = kind.key(command.argv);
        if (key !== undefined) return this.enqueue(k, `${k}${key}`, command, options);
      }
    }
    return this.spawn(command, options);
  }

  private enqueue(kind: number, key: string, command: Command, options: { allowFailure?: boolean }): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(key);
      if (!queue) {
        queue = [];
        this.queues.set(key, queue);
        setImmediate(() => {
          this.queues.delete(key);
          void this.flush(BATCHES[kind]!, queue!);
        });
      }
      queue.push({ command, options, resolve, reject });
    });
  }

  private async flush(kind: BatchKind, queue: PendingRead[]): Promise<void> {
    const alone = (p: PendingRead) => this.spawn(p.command, p.options).then(p.resolve, p.reject);
    if (queue.length === 1) return alone(queue[0]!);
    const batch = kind.command(queue.map((p) => p.command.argv));
    let parts: (string | undefined)[] | undefined;
    let durationMs = 0;
    try {
      const r = await this.spawn(batch.command, { allowFailure: true });
      parts = batch.split(r.stdout);
      durationMs = r.durationMs;
    } catch {
      parts = undefined;
    }
    await Promise.all(
      queue.map((p, k) => {
        const out = parts?.[k];
        // That command failed (or the batch did): alone it gives its own exit code and message.
        if (out === undefined) return alone(p);
        p.resolve({ stdout: out, stderr: "", exitCode: 0, durationMs: durationMs / queue.length });
        return undefined;
      }),
    );
  }

  /**
   * Runs a logged command again the way it ran (benchmarks time each
   * command of a pass alone): an in-process read in-process, anything else,
   * a batch included, as its own process. Never throws on a non-zero exit.
   */
  async replay(entry: RunnerLogEntry): Promise<RunResult> {
    if (entry.asked) return this.run(entry.asked, { allowFailure: true });
    return this.spawn(entry.command, { allowFailure: true });
  }

  private record(command: Command, result: RunResult, asked?: Command): void {
    this.log.push(asked ? { command, result, asked } : { command, result });
    if (this.log.length > LOG_MAX) this.log.splice(0, this.log.length - LOG_MAX);
  }

  private async spawn(command: Command, options: { allowFailure?: boolean } = {}): Promise<RunResult> {
    const [file, ...args] = command.argv;
    if (!file) throw new TypeError("empty argv");
    const started = performance.now();
    let result: RunResult;
    try {
      const out = await execa(file, args, {
        // No stdin: none at all (cheaper than an empty one: execa sets up no input stream).
        ...(command.stdin === undefined ? { stdin: "ignore" as const } : { input: command.stdin }),
        reject: false,
        timeout: this.timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
        stripFinalNewline: false,
        // Parsers read English text (virsh net-list, ip, nft): never a translated one.
        env: { LC_ALL: "C", ...this.env },
      });
      result = {
        stdout: String(out.stdout ?? ""),
        stderr: String(out.stderr ?? "") + (out.timedOut ? `\n(timed out after ${this.timeoutMs} ms)` : ""),
        exitCode: out.exitCode ?? (out.failed ? 127 : 0),
        durationMs: performance.now() - started,
      };
      if (out.failed && out.exitCode === undefined && out.cause) {
        throw new ExecError(command.argv, 127, String((out.cause as Error).message ?? out.cause), { cause: out.cause });
      }
    } catch (err) {
      if (err instanceof ExecError) throw err;
      throw new ExecError(command.argv, 127, String(err), { cause: err });
    }
    this.record(command, result);
    if (result.exitCode !== 0 && !options.allowFailure) throw new ExecError(command.argv, result.exitCode, result.stderr);
    return result;
  }
}
