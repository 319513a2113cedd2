/** tcpdump at a capture point of the attack tier: started before the frames, stopped after them by pid, counted with a filter. */
import { spawn, type ChildProcess } from "node:child_process";
import { netnsExec, sleep, type LabExec } from "../exec.ts";
import type { CapturePoint } from "./attack-types.ts";

const inNs = netnsExec;

/** A tcpdump writing inbound frames of one interface to a pcap file. */
export interface Capture {
  point: CapturePoint;
  file: string;
  child: ChildProcess;
  stderr: string;
}

/** Bounded waits of the tier (ms). */
export const ATTACK_TIMING = { listen: 5000, settle: 400, stop: 3000 };

/**
 * Starts `tcpdump -i IF -n -U -w FILE -Q in` in the point's namespace and
 * waits (bounded) until it prints "listening on" (tcpdump(1)): frames sent
 * after this resolves are captured. Runs as root (`-Z root`), immediate mode.
 * @throws when tcpdump exits or stays silent for ATTACK_TIMING.listen ms (then it is stopped).
 */
export async function startCapture(point: CapturePoint, file: string, filter?: string, text = false): Promise<Capture> {
  const args = ["-i", point.iface, "-n", "-Q", "in", "--immediate-mode", "-Z", "root", ...(text ? ["-l", "-tt"] : ["-U", "-w", file]), ...(filter ? [filter] : [])];
  const argv = inNs(point.namespace, ["tcpdump", ...args]);
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", text ? "pipe" : "ignore", "pipe"] });
  const cap: Capture = { point, file, child, stderr: "" };
  child.stderr!.on("data", (d: Buffer) => {
    cap.stderr += d.toString();
  });
  const until = Date.now() + ATTACK_TIMING.listen;
  while (!cap.stderr.includes("listening on")) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > until) {
      await stopProcess(child);
      throw new Error(`tcpdump on ${point.name} (${point.namespace} ${point.iface}) did not start: ${cap.stderr.trim().slice(-300) || "no output"}`);
    }
    await sleep(20);
  }
  return cap;
}

/** Signals a child we started (by its pid) and waits for it to exit; SIGKILL after ATTACK_TIMING.stop ms. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGINT"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, signal);
    } catch {
      /* already gone */
    }
  }
  const t = setTimeout(() => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }, ATTACK_TIMING.stop);
  await exited;
  clearTimeout(t);
}

/** Frames in a pcap file matching `filter` (`tcpdump -r FILE -nn FILTER`, one line per frame). @throws on a bad filter or file. */
export async function countIn(x: LabExec, file: string, filter: string): Promise<number> {
  const r = await x.probe(["tcpdump", "-r", file, "-nn", filter]);
  if (r.exitCode !== 0) throw new Error(`tcpdump -r ${file} '${filter}' exited ${r.exitCode}: ${r.stderr.trim().slice(-200)}`);
  return r.stdout.split("\n").filter((l) => l.trim()).length;
}
