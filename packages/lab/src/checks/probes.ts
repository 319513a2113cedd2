/**
 * The probes of `netfleet-lab check`, each of which tells "the network said
 * no" from "the probe could not do its job": ping, a TCP connection (labnet),
 * a DNS question (dig), a fresh DHCP exchange (busybox udhcpc with a hook that
 * only records), and packet captures (tcpdump) for one-way observation. All
 * commands are argv arrays run inside a namespace with `ip netns exec`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Runner, RunResult } from "@netfleet/agent";
import { LABNET, type Lease } from "../services.ts";

/** argv that runs `argv` inside network namespace `namespace`. */
export const inNs = (namespace: string, ...argv: string[]): string[] => ["ip", "netns", "exec", namespace, ...argv];

/** A probe command that could not do its job: the reason, for the row's detail. */
export interface NotRun {
  ran: false;
  why: string;
}

const tail = (text: string, lines = 2) => text.trim().split("\n").slice(-lines).join(" | ");

/**
 * Why a command's result cannot be read as the network's answer, or
 * undefined when the tool itself ran: killed by the runner's timeout,
 * `ip netns exec` unable to enter the namespace (exit 255) or to run the tool
 * (exit 1 with `exec of "TOOL" failed`), or the shell-style 126/127.
 */
function notRun(r: RunResult): string | undefined {
  if (/\(timed out after \d+ ms\)/.test(r.stderr)) return `killed by the probe timeout: ${tail(r.stderr)}`;
  const exec = /exec of "([^"]+)" failed: ([^\n]*)/.exec(r.stderr);
  if (exec) return `${exec[1]} could not run: ${exec[2]}`;
  const ns = /Cannot open network namespace "([^"]+)": ([^\n]*)/.exec(r.stderr);
  if (ns) return `no namespace ${ns[1]}: ${ns[2]}`;
  if (r.exitCode === 255 || r.exitCode === 126 || r.exitCode === 127) return `exit ${r.exitCode}: ${tail(r.stderr) || "no output"}`;
  return undefined;
}

/**
 * argv of labnet (lab/labnet.ts) in `namespace`, with Node's compile cache
 * (the directory `enableCompileCache()` uses: NODE_COMPILE_CACHE when set,
 * else <tmpdir>/node-compile-cache): a cached start costs a third of the CPU
 * of a cold one, which counts on a busy machine.
 */
function labnet(namespace: string, ...args: string[]): string[] {
  const cache = process.env.NODE_COMPILE_CACHE || join(tmpdir(), "node-compile-cache");
  return inNs(namespace, "env", `NODE_COMPILE_CACHE=${cache}`, process.execPath, LABNET, ...args);
}

/** Runs a read-only probe command whose failure is an answer to read, not an exception. */
async function runProbe(runner: Runner, argv: string[]): Promise<RunResult> {
  return runner.run({ argv, mutating: false }, { allowFailure: true });
}

// --- ping

/** What a ping run said: echo requests sent, replies and ICMP errors (e.g. "host unreachable") received. */
export type PingResult = { ran: true; transmitted: number; received: number; errors: number; summary: string } | NotRun;

/** Options of one ping run; `pattern` is up to 16 bytes as hex, repeated in the payload (a marker a capture can find). */
export interface PingOptions {
  count?: number;
  /** Seconds between requests (>= 0.2 without privileges; we are root). */
  intervalS?: number;
  /** Seconds to wait for the last reply. */
  waitS?: number;
  /** Source address (`ping -I`), which must be on the VM's interface. */
  source?: string;
  pattern?: string;
}

/**
 * Pings `target` from `namespace`. `ran: true` only when ping printed its
 * statistics and sent at least one request: exit 0 (a reply) or exit 1 (no
 * reply, or ICMP errors). Exit 2 (no route, a source address not on the
 * interface, bad arguments), a missing ping, a timeout: `ran: false`.
 */
export async function ping(runner: Runner, namespace: string, target: string, o: PingOptions = {}): Promise<PingResult> {
  const argv = inNs(namespace, "ping", "-n", "-q", "-c", String(o.count ?? 2), "-i", String(o.intervalS ?? 0.2), "-W", String(o.waitS ?? 1));
  if (o.source) argv.push("-I", o.source);
  if (o.pattern) argv.push("-p", o.pattern);
  argv.push(target);
  const r = await runProbe(runner, argv);
  const why = notRun(r);
  if (why) return { ran: false, why };
  const stats = /(\d+) packets transmitted, (\d+) received(?:, \+(\d+) errors)?/.exec(r.stdout);
  if ((r.exitCode !== 0 && r.exitCode !== 1) || !stats) return { ran: false, why: `ping exit ${r.exitCode}: ${tail(r.stderr || r.stdout)}` };
  const transmitted = Number(stats[1]);
  if (transmitted === 0) return { ran: false, why: `ping sent nothing: ${tail(r.stderr || r.stdout)}` };
  return { ran: true, transmitted, received: Number(stats[2]), errors: Number(stats[3] ?? 0), summary: stats[0] };
}

// --- TCP (labnet)

/** A TCP connection attempt: connected (with the greeting's server name and the peer address it saw) or the network's refusal. */
export type TcpResult =
  | { ran: true; connected: true; server?: string; peer?: string }
  | { ran: true; connected: false; reason: string; message: string }
  | NotRun;

/**
 * Opens a TCP connection from `namespace` with labnet (`connect`, see
 * lab/labnet.ts): exit 0 connected, exit 1 with `labnet: no-connection KIND`
 * the network gave none (refused, timeout, unreachable, reset, closed); any
 * other result means the probe itself broke (`ran: false`).
 */
export async function tcpConnect(runner: Runner, namespace: string, ip: string, port: number, o: { timeoutMs?: number } = {}): Promise<TcpResult> {
  const argv = labnet(namespace, "connect", ip, String(port), String(o.timeoutMs ?? 2000));
  const r = await runProbe(runner, argv);
  const why = notRun(r);
  if (why) return { ran: false, why };
  if (r.exitCode === 0) {
    const [server, peer] = r.stdout.trim().split(" ");
    if (!server) return { ran: false, why: "labnet connected but printed no greeting" };
    return { ran: true, connected: true, server, ...(peer ? { peer } : {}) };
  }
  const no = /labnet: no-connection (\w+): ([^\n]*)/.exec(r.stderr);
  if (r.exitCode === 1 && no) return { ran: true, connected: false, reason: no[1]!, message: no[2]! };
  return { ran: false, why: `labnet exit ${r.exitCode}: ${tail(r.stderr || r.stdout)}` };
}

/** What one SYN probe did: connected, or the network's answer (timed out, refused). */
export type SynResult = { ran: true; connected: boolean; summary: string } | NotRun;

/**
 * Tries one TCP connection from `namespace` to `ip`:`port` from local port
 * `localPort`, so a capture elsewhere can pick its SYN out. The client is
 * `dig +tcp` (dnsutils): a C program that binds the source port it is given
 * (busybox nc ignores `-p` when connecting, and a Node per SYN is slow on a
 * busy machine); what it says after connecting does not matter. `ran: true`
 * when dig reported the network's answer: exit 9 with "Connection to ...
 * failed" (no connection: timed out, refused) or "communications error"
 * (connected, no DNS answer), exit 0 (connected). A bind error, a missing
 * dig, a timeout of the probe itself: `ran: false`. Whether the SYN left the
 * VM is for a capture to say (an unanswered ARP also ends in "timed out").
 */
export async function tcpSyn(runner: Runner, namespace: string, ip: string, port: number, localPort: number): Promise<SynResult> {
  const r = await runProbe(runner, inNs(namespace, "dig", "+tcp", "+time=1", "+tries=1", "-b", `0.0.0.0#${localPort}`, "-p", String(port), `@${ip}`, "syn.probe.invalid"));
  const why = notRun(r);
  if (why) return { ran: false, why };
  const text = `${r.stdout}\n${r.stderr}`;
  const failed = /Connection to \S+ for \S+ failed: ([^\n]*?)\.?$/m.exec(text);
  if (r.exitCode === 9 && failed) return { ran: true, connected: false, summary: failed[1]! };
  const comm = /communications error to \S+: ([^\n]*)/.exec(text);
  if (r.exitCode === 9 && comm) return { ran: true, connected: true, summary: `connected, then ${comm[1]}` };
  if (r.exitCode === 0) return { ran: true, connected: true, summary: "connected" };
  return { ran: false, why: `dig exit ${r.exitCode}: ${tail(text)}` };
}

// --- DNS (dig)

/** A DNS answer: the response code (NOERROR, REFUSED, NXDOMAIN, SERVFAIL...) and the A records. */
export type DnsResult = { ran: true; status: string; answers: string[] } | NotRun;

/**
 * Asks `server` for the A record of `name` (two tries, one second each).
 * `ran: true` only when a server answered (dig exit 0 with a status line);
 * exit 9 (no answer at all), other exits, a missing dig: `ran: false`.
 */
export async function dig(runner: Runner, namespace: string, server: string, name: string): Promise<DnsResult> {
  const r = await runProbe(runner, inNs(namespace, "dig", "+time=1", "+tries=2", "+noall", "+comments", "+answer", `@${server}`, name, "A"));
  const why = notRun(r);
  if (why) return { ran: false, why };
  if (r.exitCode === 9) return { ran: false, why: `no answer from ${server} (dig exit 9)` };
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1];
  if (r.exitCode !== 0 || !status) return { ran: false, why: `dig exit ${r.exitCode}: ${tail(r.stderr || r.stdout)}` };
  return { ran: true, status, answers: [...r.stdout.matchAll(/\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!) };
}

// --- DHCP (busybox udhcpc, recording only)

/** What a DHCP server answered (udhcpc's names): the address, mask bits, router, DNS server, domain, lease seconds, server id; the shape the lab's hook records. */
export type DhcpAnswer = Lease;

/** A fresh DHCP exchange: an answer (ACK), none within the tries, or a probe that could not run. */
export type DhcpResult = { ran: true; answer?: DhcpAnswer; log: string } | NotRun;

const DHCP_PROBE_HOOK = `#!/bin/sh
# netfleet-lab check: udhcpc event hook that only prints the server's answer.
# It never touches the interface (no deconfig, no address, no route): the
# probe asks for a lease without disturbing the VM.
case "$1" in
  bound|renew)
    printf 'NETFLEET-DHCP {"ip":"%s","mask":"%s","router":"%s","dns":"%s","domain":"%s","lease":"%s","serverid":"%s"}\\n' \\
      "$ip" "$mask" "$router" "$dns" "$domain" "$lease" "$serverid"
    ;;
esac
exit 0
`;

/** Writes the recording hook under `dir` (once; mode 0755) and returns its path. */
export function dhcpProbeHook(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const hook = join(dir, "dhcp-probe-hook.sh");
  if (!existsSync(hook) || readFileSync(hook, "utf8") !== DHCP_PROBE_HOOK) {
    writeFileSync(hook, DHCP_PROBE_HOOK);
    chmodSync(hook, 0o755);
  }
  return hook;
}

/**
 * A full DHCP exchange (DISCOVER, OFFER, REQUEST, ACK) from `namespace` on
 * `iface` with busybox udhcpc: the VM's own MAC and hostname, asking for
 * `requestIp` when given, `tries` DISCOVERs one second apart, quitting once
 * bound without releasing. The hook only prints the answer, so the VM keeps
 * its address and routes. udhcpc exit 1 with "no lease": no answer (`answer`
 * absent); anything else that is not exit 0 with an answer: `ran: false`.
 */
export async function dhcpExchange(runner: Runner, o: { namespace: string; iface: string; hostname: string; hook: string; requestIp?: string; tries?: number }): Promise<DhcpResult> {
  const argv = inNs(o.namespace, "busybox", "udhcpc", "-i", o.iface, "-f", "-q", "-n", "-t", String(o.tries ?? 3), "-T", "1", "-A", "0", "-s", o.hook, "-x", `hostname:${o.hostname}`);
  if (o.requestIp) argv.push("-r", o.requestIp);
  const r = await runProbe(runner, argv);
  const why = notRun(r);
  if (why) return { ran: false, why };
  const log = tail(r.stderr, 3);
  const line = /NETFLEET-DHCP (\{.*\})/.exec(r.stdout)?.[1];
  if (r.exitCode === 0 && line) return { ran: true, answer: JSON.parse(line) as DhcpAnswer, log };
  if (r.exitCode === 1 && /no lease/.test(r.stderr)) return { ran: true, log };
  return { ran: false, why: `udhcpc exit ${r.exitCode}: ${log || tail(r.stdout)}` };
}

// --- captures (tcpdump)

/** One captured frame: Ethernet source and destination, tcpdump's line after them, and the packet's bytes as hex (no spaces). */
export interface Frame {
  src: string;
  dst: string;
  text: string;
  hex: string;
}

/** What a capture saw; `problem` when it cannot vouch for what it did not see (it did not start, the kernel dropped frames). */
export interface CaptureResult {
  frames: Frame[];
  problem?: string;
}

/**
 * Parses `tcpdump -n -e -x` output: a header line per frame
 * (`HH:MM:SS.us SRC > DST, ethertype ..., length N: ...`) followed by
 * tab-indented `0xOFFS:  hhhh hhhh ...` lines.
 */
function parseTcpdump(text: string): Frame[] {
  const frames: Frame[] = [];
  let cur: Frame | undefined;
  for (const line of text.split("\n")) {
    const head = /^\d\d:\d\d:\d\d\.\d+ ([0-9a-f:]{17}) > ([0-9a-f:]{17}|[^,\s]+), (.*)$/.exec(line);
    if (head) {
      cur = { src: head[1]!, dst: head[2]!, text: head[3]!, hex: "" };
      frames.push(cur);
      continue;
    }
    const data = /^\s+0x[0-9a-f]+:\s+([0-9a-f ]+)/.exec(line);
    if (data && cur) cur.hex += data[1]!.replace(/\s+/g, "");
  }
  return frames;
}

/**
 * A tcpdump running in a namespace until stopped: every frame on one
 * interface, line-buffered, with Ethernet headers and packet bytes. start()
 * resolves once tcpdump printed "listening on" (or rejects after
 * `readyMs`, the process stopped); stop() ends it by pid (SIGINT, then
 * SIGKILL after 3 s) and returns what it saw.
 */
export class Capture {
  private readonly child: ChildProcess;
  private stdout = "";
  private stderr = "";
  private readonly exited: Promise<void>;
  readonly label: string;

  private constructor(label: string, argv: string[]) {
    this.label = label;
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    this.child.stdout!.on("data", (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => {
      this.child.once("close", () => resolve());
      this.child.once("error", (err) => {
        this.stderr += `\n${err.message}`;
        resolve();
      });
    });
  }

  /** Starts tcpdump on `iface` in `namespace` (snap length 256 bytes) and waits for it to listen. */
  static async start(label: string, namespace: string, iface: string, readyMs = 10_000): Promise<Capture> {
    const c = new Capture(label, inNs(namespace, "tcpdump", "-i", iface, "-n", "-e", "-x", "-l", "--immediate-mode", "-s", "256"));
    const until = Date.now() + readyMs;
    let done = false;
    void c.exited.then(() => (done = true));
    while (!c.stderr.includes("listening on")) {
      if (done || Date.now() > until) {
        await c.stop();
        throw new Error(`capture ${label}: tcpdump did not start listening within ${readyMs} ms: ${tail(c.stderr) || "no output"}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return c;
  }

  /** Stops tcpdump (by its pid) and returns its frames; `problem` when it died early or the kernel dropped frames. */
  async stop(): Promise<CaptureResult> {
    const pid = this.child.pid;
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(pid!, sig);
      } catch {
        /* it exited meanwhile */
      }
    };
    if (pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      signal("SIGINT");
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([this.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(r, 3000, true)))]);
      clearTimeout(timer);
      if (late) {
        signal("SIGKILL");
        await this.exited;
      }
    } else {
      await this.exited;
    }
    const frames = parseTcpdump(this.stdout);
    const dropped = Number(/(\d+) packets? dropped by kernel/.exec(this.stderr)?.[1] ?? "0");
    const summary = /\d+ packets? captured/.test(this.stderr);
    const problem = !summary ? `tcpdump ended without its summary: ${tail(this.stderr)}` : dropped > 0 ? `the kernel dropped ${dropped} frames` : undefined;
    return { frames, ...(problem ? { problem } : {}) };
  }
}
