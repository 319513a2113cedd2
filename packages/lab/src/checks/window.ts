/** Windows of the attack tier: a sender kept running through an event (an agent restart, an OVS restart) that might open a gap. */
import { spawn } from "node:child_process";
import { netnsExec, sleep } from "../exec.ts";
import { ATTACK_PY, PYTHON, type CapturePoint, type Frame, type Sender } from "./attack-types.ts";
import { startCapture, stopProcess } from "./capture.ts";

const inNs = netnsExec;

/** What a window measurement saw at the target. */
export interface WindowResult {
  /** Spoofed frames seen at the target during the whole window (goal: 0). */
  leaked: number;
  /** Legitimate frames seen before the event (the stream worked). */
  legitBefore: number;
  /** Legitimate frames seen in all. */
  legit: number;
  /** Longest gap between two legitimate frames after the event began (ms). */
  outageMs: number;
  /** From the event's trigger (e.g. the agent's start) to the legitimate frame that ended that gap (ms). */
  resumeMs: number | undefined;
  /** Spoofed and legitimate frames sent (attack.py's count; the two alternate). */
  sent: number;
}

/**
 * Measures a window: `sender` sends a spoofed and a legitimate datagram
 * every `intervalMs` (10-20 ms: ../shared/design/attack-tier.md) to `to`
 * while `event` disturbs the host; a text-mode tcpdump at `at` timestamps
 * every arrival. `event` resolves with the time (epoch ms) its trigger
 * happened (e.g. when the agent was started again). The stream runs until
 * legitimate frames have flowed again for 500 ms after the trigger, or
 * `resumeTimeoutMs` — every process started here is stopped by its pid.
 */
export async function measureWindow(opts: {
  sender: Sender;
  to: { mac: string; ip: string };
  spoofIp: string;
  at: CapturePoint;
  port: number;
  event: () => Promise<number>;
  intervalMs?: number;
  resumeTimeoutMs?: number;
}): Promise<WindowResult> {
  const interval = opts.intervalMs ?? 15;
  const legitFrame: Frame = { kind: "udp", src_mac: opts.sender.mac, dst_mac: opts.to.mac, src_ip: opts.sender.ip, dst_ip: opts.to.ip, dport: opts.port };
  const spoofFrame: Frame = { ...legitFrame, src_ip: opts.spoofIp };
  const cap = await startCapture(opts.at, "", `udp and dst port ${opts.port}`, true);
  const legit: number[] = [];
  let leaked = 0;
  let buf = "";
  cap.child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^(\d+\.\d+) IP (\d+\.\d+\.\d+\.\d+)\.\d+ >/.exec(line);
      if (!m) continue;
      if (m[2] === opts.sender.ip) legit.push(Math.round(Number(m[1]) * 1000));
      else if (m[2] === opts.spoofIp) leaked++;
    }
  });
  const maxRounds = Math.ceil(((opts.resumeTimeoutMs ?? 30_000) + 20_000) / interval);
  const argv = inNs(opts.sender.namespace, [PYTHON, ATTACK_PY, opts.sender.iface, String(Math.min(maxRounds, 10_000)), String(interval), JSON.stringify(legitFrame), JSON.stringify(spoofFrame)]);
  const stream = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  stream.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  stream.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  try {
    const until = Date.now() + 10_000;
    while (legit.length < 5) {
      if (Date.now() > until || stream.exitCode !== null) throw new Error(`the legitimate stream from ${opts.sender.name} never reached ${opts.at.name} (${out.trim().slice(-200)})`);
      await sleep(20);
    }
    const legitBefore = legit.length;
    const eventAt = Date.now();
    const trigger = await opts.event();
    const deadline = Date.now() + (opts.resumeTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      const last = legit[legit.length - 1] ?? 0;
      const firstAfter = legit.find((t) => t > trigger);
      if (firstAfter !== undefined && last - firstAfter >= 500) break;
      await sleep(50);
    }
    await stopProcess(stream, "SIGTERM");
    await sleep(300);
    await stopProcess(cap.child);
    let outageMs = 0;
    let resumeMs: number | undefined;
    const during = legit.filter((t) => t >= eventAt - 1000);
    for (let i = 1; i < during.length; i++) {
      const gap = during[i]! - during[i - 1]!;
      if (gap > outageMs) {
        outageMs = gap;
        resumeMs = during[i]! - trigger;
      }
    }
    if (!legit.some((t) => t > trigger)) resumeMs = undefined;
    const sent = Number(/sent (\d+)/.exec(out)?.[1] ?? 0);
    return { leaked, legitBefore, legit: legit.length, outageMs, resumeMs, sent };
  } finally {
    await stopProcess(stream, "SIGTERM");
    await stopProcess(cap.child);
  }
}
