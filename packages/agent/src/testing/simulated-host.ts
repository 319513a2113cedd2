import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { Command, Runner, RunResult } from "../exec/runner.ts";
import { ExecError } from "../exec/runner.ts";

/** Where the simulated host keeps its state, and how slow each command is. */
export interface SimulatedHostOptions {
  /** Each command takes this long (the benchmark's stand-in for real tool latency). */
  delayMs?: number;
  /** Keeps the simulated host's state in this file, so it outlives an agent process (tests that kill agents). */
  stateFile?: string;
  /** A sysctl write whose `name=value` matches fails with exit 1 (a resource that cannot be converged). */
  failWrites?: RegExp;
  /** Starting values. */
  sysctls?: Record<string, string>;
}

/**
 * A fake executor for simulated agents: a host whose only resources are
 * sysctls, held in memory (one small map per agent) or in a file. Reads
 * answer from the map, writes change it; anything else is an error. Used
 * with sysctl-only assignments by the NATS tests and the fleet benchmark.
 */
export class SimulatedHostRunner implements Runner {
  private readonly options: SimulatedHostOptions;
  private values: Record<string, string>;
  commands = 0;

  constructor(options: SimulatedHostOptions = {}) {
    this.options = options;
    this.values = { ...(options.sysctls ?? {}), ...this.load() };
  }

  /** The host's current value (tests), or sets one behind the agent's back (drift). */
  get(name: string): string | undefined {
    return this.load()[name] ?? this.values[name];
  }

  set(name: string, value: string): void {
    this.values = { ...this.values, ...this.load(), [name]: value };
    this.save();
  }

  async run(command: Command, options: { allowFailure?: boolean } = {}): Promise<RunResult> {
    this.commands++;
    if (this.options.delayMs) await new Promise((r) => setTimeout(r, this.options.delayMs));
    const [tool, ...args] = command.argv;
    const done = (stdout: string, exitCode = 0, stderr = ""): RunResult => {
      if (exitCode !== 0 && !options.allowFailure) throw new ExecError(command.argv, exitCode, stderr);
      return { stdout, stderr, exitCode, durationMs: this.options.delayMs ?? 0 };
    };
    if (tool !== "sysctl") throw new ExecError(command.argv, 127, "simulated host: only sysctl exists here");
    this.values = { ...this.values, ...this.load() };
    if (args[0] === "-n" && args.length === 2) return done(`${this.values[args[1]!] ?? "0"}\n`);
    if (args[0] === "-w" && args.length === 2 && command.mutating) {
      const [name, value] = args[1]!.split("=") as [string, string];
      if (this.options.failWrites?.test(args[1]!)) return done("", 1, `sysctl: permission denied on key "${name}"`);
      this.values[name] = value;
      this.save();
      return done(`${name} = ${value}\n`);
    }
    throw new ExecError(command.argv, 2, "simulated host: unsupported sysctl call");
  }

  private load(): Record<string, string> {
    if (!this.options.stateFile) return {};
    try {
      return JSON.parse(readFileSync(this.options.stateFile, "utf8")) as Record<string, string>;
    } catch {
      return {};
    }
  }

  private save(): void {
    if (!this.options.stateFile) return;
    writeFileSync(`${this.options.stateFile}.tmp`, JSON.stringify(this.values));
    renameSync(`${this.options.stateFile}.tmp`, this.options.stateFile);
  }
}
