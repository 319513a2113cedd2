import { ExecError, type Command, type Runner, type RunResult } from "./runner.ts";

/** A reply the recording runner gives to a command that matches. */
export interface ScriptedReply {
  stdout?: string;
  stderr?: string;
  exitCode?: number;
}

/**
 * A Runner for unit tests: replies come from fixtures keyed by argv, and
 * every command is recorded so tests assert on the argv that would run.
 * An argv without a reply is an error: tests never reach a real tool.
 */
export class RecordingRunner implements Runner {
  readonly calls: Command[] = [];
  private readonly replies = new Map<string, ScriptedReply | ((c: Command) => ScriptedReply)>();

  reply(argv: string[], reply: ScriptedReply | ((c: Command) => ScriptedReply)): this {
    this.replies.set(JSON.stringify(argv), reply);
    return this;
  }

  get mutatingCalls(): Command[] {
    return this.calls.filter((c) => c.mutating);
  }

  async run(command: Command, options: { allowFailure?: boolean } = {}): Promise<RunResult> {
    this.calls.push(command);
    const scripted = this.replies.get(JSON.stringify(command.argv));
    if (scripted === undefined) {
      if (command.mutating) return { stdout: "", stderr: "", exitCode: 0, durationMs: 0 };
      throw new Error(`RecordingRunner: no reply for ${JSON.stringify(command.argv)}`);
    }
    const r = typeof scripted === "function" ? scripted(command) : scripted;
    const result = { stdout: r.stdout ?? "", stderr: r.stderr ?? "", exitCode: r.exitCode ?? 0, durationMs: 0 };
    if (result.exitCode !== 0 && !options.allowFailure) throw new ExecError(command.argv, result.exitCode, result.stderr);
    return result;
  }
}
