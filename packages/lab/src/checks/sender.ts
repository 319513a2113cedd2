import { spawn, type ChildProcess } from "node:child_process";
import PQueue from "p-queue";
import { netnsExec, sleep } from "../exec.ts";
import { ATTACK_PY, PYTHON, type Frame, type Sender } from "./attack-types.ts";
import { stopProcess } from "./capture.ts";

const inNs = netnsExec;

/** One running `attack.py --serve`: its stdout lines not yet read, the readers waiting for one, and the queue that keeps its requests in order. */
interface Server {
  child: ChildProcess;
  lines: string[];
  waiters: ((line: string) => void)[];
  queue: PQueue;
  /** The last 2000 characters of its stderr, for error messages. */
  out: string;
  /** Set once it failed to start or to answer: it is out of step with its requests and is being stopped. */
  retired: boolean;
}

/**
 * One `attack.py --serve IFACE` per sender namespace, started on first use
 * and kept for the run (scapy is imported once per namespace, not once per
 * row); requests to one sender are answered in order. A server that does not
 * start, or does not answer a request in time, is stopped and forgotten (a
 * late answer would pair with the next request), so the next request starts
 * a new one. `close()` ends every one of them (stdin closed, then SIGTERM by pid).
 */
export class SenderPool {
  /** Per `namespace/iface`: the server and its start (resolved at attack.py's "ready"), so concurrent callers wait for the same start. */
  private readonly servers = new Map<string, { srv: Server; ready: Promise<Server> }>();

  private readonly timeoutMs: number;

  /** `timeoutMs`: how long one request (or the start, scapy's import) may take before it is an error. */
  constructor(timeoutMs = 60_000) {
    this.timeoutMs = timeoutMs;
  }

  private server(s: Sender): Promise<Server> {
    const key = `${s.namespace}/${s.iface}`;
    const known = this.servers.get(key);
    if (known) return known.ready;
    const argv = inNs(s.namespace, [PYTHON, ATTACK_PY, "--serve", s.iface]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    const srv: Server = { child, lines: [], waiters: [], queue: new PQueue({ concurrency: 1 }), out: "", retired: false };
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const w = srv.waiters.shift();
        if (w) w(line);
        else srv.lines.push(line);
      }
    });
    child.stderr!.on("data", (d: Buffer) => (srv.out = (srv.out + d.toString()).slice(-2000)));
    child.stdin!.on("error", () => undefined);
    const ready = (async () => {
      try {
        const first = await this.nextLine(srv, s);
        if (first !== "ready") throw new Error(`attack.py --serve in ${s.namespace} did not start: ${first} ${srv.out.trim().slice(-300)}`);
        return srv;
      } catch (err) {
        await this.retire(key, srv);
        throw err;
      }
    })();
    this.servers.set(key, { srv, ready });
    return ready;
  }

  /** Forgets `srv` (if it is still the one for `key`) and stops its process. */
  private async retire(key: string, srv: Server): Promise<void> {
    srv.retired = true;
    if (this.servers.get(key)?.srv === srv) this.servers.delete(key);
    srv.child.stdin!.end();
    await stopProcess(srv.child, "SIGTERM");
  }

  /** The next stdout line of `srv`. @throws when none comes within the timeout or the process exits first (the reader is then withdrawn). */
  private nextLine(srv: Server, s: Sender): Promise<string> {
    const queued = srv.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (srv.child.exitCode !== null || srv.child.signalCode !== null) {
      return Promise.reject(new Error(`attack.py in ${s.namespace} exited: ${srv.out.trim().slice(-300)}`));
    }
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(t);
        srv.child.off("exit", onExit);
        const i = srv.waiters.indexOf(waiter);
        if (i >= 0) srv.waiters.splice(i, 1);
      };
      const fail = (err: Error) => {
        settle();
        reject(err);
      };
      const waiter = (line: string) => {
        settle();
        resolve(line);
      };
      const t = setTimeout(() => fail(new Error(`attack.py in ${s.namespace}: no answer within ${this.timeoutMs} ms ${srv.out.trim().slice(-300)}`)), this.timeoutMs);
      const onExit = () => fail(new Error(`attack.py in ${s.namespace} exited: ${srv.out.trim().slice(-300)}`));
      srv.child.once("exit", onExit);
      srv.waiters.push(waiter);
    });
  }

  /** Starts the sender's server (scapy imported) without sending anything. @throws when it does not start. */
  async start(s: Sender): Promise<void> {
    await this.server(s);
  }

  /**
   * Sends `frames` from `s`: `count` rounds, `intervalMs` apart.
   * @throws when attack.py reports an error, does not answer (the server is then stopped), or its server was stopped by an earlier failure.
   */
  async send(s: Sender, frames: Frame[], count = 2, intervalMs = 30): Promise<void> {
    if (frames.length === 0) return;
    const srv = await this.server(s);
    await srv.queue.add(async () => {
      if (srv.retired) throw new Error(`attack.py in ${s.namespace} was stopped after an earlier request failed`);
      srv.child.stdin!.write(JSON.stringify({ count, interval_ms: intervalMs, frames }) + "\n");
      let answer: string;
      try {
        answer = await this.nextLine(srv, s);
      } catch (err) {
        await this.retire(`${s.namespace}/${s.iface}`, srv);
        throw err;
      }
      if (!/^sent \d+$/.test(answer)) throw new Error(`attack.py in ${s.namespace}: ${answer}`);
    });
  }

  /** Stops every server this pool started (end of stdin, then SIGTERM by pid). */
  async close(): Promise<void> {
    const all = [...this.servers.values()].map((e) => e.srv);
    this.servers.clear();
    await Promise.all(
      all.map(async (srv) => {
        srv.child.stdin!.end();
        await Promise.race([new Promise((r) => srv.child.once("exit", r)), sleep(1000)]);
        await stopProcess(srv.child, "SIGTERM");
      }),
    );
  }
}

/** The MAC of `ip` in a namespace's neighbour table (`ip -json neigh show`), undefined when it has no entry. */
