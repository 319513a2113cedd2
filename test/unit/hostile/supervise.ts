/**
 * Runs site folders through run-cases.ts in a child process, bounded: a case
 * that gives no answer within `boundMs` (a FIFO read blocks forever) is
 * recorded as hung and the child is killed by its pid and restarted past it;
 * a child that dies (memory exhausted) records the case it was on as
 * crashed. The child runs under an address-space limit (prlimit --as) so a
 * loader reading /dev/zero cannot take the machine's memory.
 */
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { InputProblem } from "@netfleet/shared";

export interface CaseResult {
  id: string;
  outcome: "refused" | "accepted" | "crashed" | "hung";
  problems?: InputProblem[];
  message?: string;
  error?: string;
  /** Growth of the child's peak resident memory during this case. */
  rssGrowthKiB?: number;
  /** Milliseconds the load took (for the report, never asserted). */
  ms?: number;
}

const RUNNER = join(import.meta.dirname, "run-cases.ts");
/** Address space of the child: Node needs about 1.2 GiB of reservations to start. */
const ADDRESS_SPACE = 3 * 1024 * 1024 * 1024;

function argv(listPath: string, from: number): [string, string[]] {
  const node = [process.execPath, RUNNER, listPath, String(from)];
  if (existsSync("/usr/bin/prlimit")) return ["/usr/bin/prlimit", [`--as=${ADDRESS_SPACE}`, "--", ...node]];
  return [node[0]!, node.slice(1)];
}

/** One child from `from` on; resolves with the index it stopped at (list end, or past a hung/crashed case). */
function runFrom(
  list: { id: string; dir: string }[],
  listPath: string,
  from: number,
  boundMs: number,
  env: NodeJS.ProcessEnv,
  results: Map<string, CaseResult>,
): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, args] = argv(listPath, from);
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env });
    let current: string | undefined;
    let index = from;
    let buffered = "";
    let stderr = "";
    let timer: NodeJS.Timeout | undefined;
    let hung = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        hung = true;
        child.kill("SIGKILL");
      }, boundMs);
    };
    arm();
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const msg = JSON.parse(text) as { start?: string } & CaseResult;
        if (msg.start !== undefined) {
          current = msg.start;
          arm();
        } else {
          results.set(msg.id, msg);
          current = undefined;
          index++;
        }
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-2000);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (current !== undefined) {
        results.set(current, hung
          ? { id: current, outcome: "hung", error: `no answer within ${boundMs / 1000} s (blocked reading, or far slower than linear)` }
          : { id: current, outcome: "crashed", error: `the loading process died (exit ${code}, signal ${signal}): ${stderr.trim().split("\n").slice(-3).join(" | ")}` });
        index++;
      } else if (index < list.length && code !== 0) {
        // Died between cases: nothing to blame; skip nothing, but never loop forever.
        results.set(list[index]!.id, { id: list[index]!.id, outcome: "crashed", error: `the loading process died before the case (exit ${code}): ${stderr.trim().slice(-300)}` });
        index++;
      }
      resolve(index);
    });
  });
}

/**
 * Loads every folder of `list`, `lanes` children side by side, each case
 * bounded by `boundMs`. `env` is the children's environment.
 */
export async function superviseCases(list: { id: string; dir: string }[], scratch: string, boundMs: number, env: NodeJS.ProcessEnv, lanes = 2): Promise<Map<string, CaseResult>> {
  const results = new Map<string, CaseResult>();
  const share = Math.ceil(list.length / lanes);
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      const part = list.slice(lane * share, (lane + 1) * share);
      if (part.length === 0) return;
      const listPath = join(scratch, `lane-${lane}.json`);
      writeFileSync(listPath, JSON.stringify(part));
      let from = 0;
      // Each pass ends at the list's end or moves past at least one case: at most part.length + 1 passes.
      for (let pass = 0; from < part.length && pass <= part.length; pass++) from = await runFrom(part, listPath, from, boundMs, env, results);
    }),
  );
  return results;
}
