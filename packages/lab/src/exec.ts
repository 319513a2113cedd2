import { ExecaRunner, mutate, read, type RunResult } from "@netfleet/agent";

/** The lab's commands: argv arrays through the agent's runner, never a shell. */
export class LabExec {
  readonly runner: ExecaRunner;
  constructor(timeoutMs = 30_000) {
    this.runner = new ExecaRunner({ timeoutMs });
  }

  /** Runs a command that changes something; throws ExecError unless it exits 0. */
  run(argv: string[], stdin?: string): Promise<RunResult> {
    return this.runner.run(mutate(argv, stdin));
  }

  /** Runs a read-only command; throws ExecError unless it exits 0. */
  read(argv: string[]): Promise<RunResult> {
    return this.runner.run(read(...argv));
  }

  /** Runs a command whose failure is an answer, not an error. */
  async probe(argv: string[], stdin?: string): Promise<RunResult> {
    return this.runner.run(stdin === undefined ? read(...argv) : mutate(argv, stdin), { allowFailure: true });
  }
}

/** The argv that runs `argv` inside named network namespace `ns` (`ip netns exec`). */
export function netnsExec(ns: string, argv: string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

/** The argv of `ovs-vsctl` against the ovsdb-server at socket path `db` (10 s timeout, so a dead server fails instead of hanging). */
export function vsctl(db: string, ...args: string[]): string[] {
  return ["ovs-vsctl", `--db=unix:${db}`, "--timeout=10", ...args];
}

/** The argv of `virsh` (quiet) against libvirt connection `uri`. */
export function virsh(uri: string, ...args: string[]): string[] {
  return ["virsh", "-q", "-c", uri, ...args];
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every `intervalMs` until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean, intervalMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
