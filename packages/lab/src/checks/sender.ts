import { spawn, type ChildProcess } from "node:child_process";
import { netnsExec, sleep } from "../exec.ts";
import { ATTACK_PY, PYTHON, type Frame, type Sender } from "./attack.ts";
import { stopProcess } from "./capture.ts";

const inNs = netnsExec;

/**
 * One `attack.py --serve IFACE` per sender namespace, started on first use
 * and kept for the run (scapy is imported once per namespace, not once per
 * row); requests to one sender are answered in order. `close()` ends every
 * one of them (stdin closed, then SIGTERM by pid).
 */
export class SenderPool {
  private readonly servers = new Map<string, { child: ChildProcess; lines: string[]; waiters: ((line: string) => void)[]; chain: Promise<unknown>; out: string }>();

  private readonly timeoutMs: number;

  /** `timeoutMs`: how long one request (or the start, scapy's import) may take before it is an error. */
  constructor(timeoutMs = 60_000) {
    this.timeoutMs = timeoutMs;
  }

  private async server(s: Sender) {
    const key = `${s.namespace}/${s.iface}`;
    let srv = this.servers.get(key);
    if (srv) return srv;
    const argv = inNs(s.namespace, [PYTHON, ATTACK_PY, "--serve", s.iface]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    const created = { child, lines: [] as string[], waiters: [] as ((line: string) => void)[], chain: Promise.resolve() as Promise<unknown>, out: "" };
    srv = created;
    this.servers.set(key, created);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const w = created.waiters.shift();
        if (w) w(line);
        else created.lines.push(line);
      }
    });
    child.stderr!.on("data", (d: Buffer) => (created.out = (created.out + d.toString()).slice(-2000)));
    child.stdin!.on("error", () => undefined);
    const ready = await this.nextLine(created, s);
    if (ready !== "ready") throw new Error(`attack.py --serve in ${s.namespace} did not start: ${ready} ${created.out.trim().slice(-300)}`);
    return created;
  }

  private nextLine(srv: { child: ChildProcess; lines: string[]; waiters: ((line: string) => void)[]; out: string }, s: Sender): Promise<string> {
    const queued = srv.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`attack.py in ${s.namespace}: no answer within ${this.timeoutMs} ms ${srv.out.trim().slice(-300)}`)), this.timeoutMs);
      const onExit = () => reject(new Error(`attack.py in ${s.namespace} exited: ${srv.out.trim().slice(-300)}`));
      srv.child.once("exit", onExit);
      srv.waiters.push((line) => {
        clearTimeout(t);
        srv.child.off("exit", onExit);
        resolve(line);
      });
    });
  }

  /** Starts the sender's server (scapy imported) without sending anything. */
  async start(s: Sender): Promise<void> {
    await this.server(s);
  }

  /** Sends `frames` from `s`: `count` rounds, `intervalMs` apart. @throws when attack.py reports an error or does not answer. */
  async send(s: Sender, frames: Frame[], count = 2, intervalMs = 30): Promise<void> {
    if (frames.length === 0) return;
    const srv = await this.server(s);
    const job = srv.chain.then(async () => {
      srv.child.stdin!.write(JSON.stringify({ count, interval_ms: intervalMs, frames }) + "\n");
      const answer = await this.nextLine(srv, s);
      if (!/^sent \d+$/.test(answer)) throw new Error(`attack.py in ${s.namespace}: ${answer}`);
    });
    srv.chain = job.catch(() => undefined);
    await job;
  }

  /** Stops every server this pool started (end of stdin, then SIGTERM by pid). */
  async close(): Promise<void> {
    await Promise.all(
      [...this.servers.values()].map(async (srv) => {
        srv.child.stdin!.end();
        await Promise.race([new Promise((r) => srv.child.once("exit", r)), sleep(1000)]);
        await stopProcess(srv.child, "SIGTERM");
      }),
    );
    this.servers.clear();
  }
}

/** The MAC of `ip` in a namespace's neighbour table (`ip -json neigh show`), undefined when it has no entry. */
