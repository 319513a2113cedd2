/**
 * How fast this machine is, measured the same way on every bench run, so that figures taken on two machines of
 * the same size (2 cores here) can be told apart from a change in netfleet: machines of one size have been seen
 * to differ by a factor of two between sessions. Two loops, each in worker threads, each for `ms`:
 * - Ed25519 verification of a 2 KB message (node:crypto verify with a null algorithm, RFC 8032 pure Ed25519),
 *   what every agent does to each assignment;
 * - JSON.parse + JSON.stringify of a 2 KB object of the shape of a report: allocation and GC, what most of the
 *   agents' and the controller's time goes to.
 * First in one worker (one core's speed), then in one worker per core at once (what the cores give together:
 * less than cores x one core when they share a physical core or the host is busy).
 * And a third, of the kernel rather than the cores: 128-byte request/echo round trips over loopback TCP between two
 * worker threads, on 32 connections at once, each waiting for its echo before it sends again. Each round trip is
 * two writes, two reads and two wake-ups of another thread: what a message between nats-server and one of
 * thousands of agents costs, where the rollout bench's processes spent 28-30% of their CPU in the kernel on a
 * machine whose user-space loops measured as fast as on one where the same rollout took half as long.
 */
import { Worker } from "node:worker_threads";
import { cpus } from "node:os";

/** Operations per second: one core alone, and all cores at once (summed). */
export interface Calibration {
  cores: number;
  ed25519VerifyPerSec: { oneCore: number; allCores: number };
  jsonRoundTripPerSec: { oneCore: number; allCores: number };
  /** Loopback TCP round trips per second (see the module's comment); absent in results written before it was measured. */
  loopbackRoundTripsPerSec?: number;
}

const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { generateKeyPairSync, sign, verify } = require("node:crypto");
const { privateKey, publicKey } = generateKeyPairSync("ed25519");
const message = Buffer.alloc(2048, 7);
const signature = sign(null, message, privateKey);
const doc = { kind: "report", site: "bench", host: "hv0001", revision: 12, hash: "0".repeat(64), rolledBack: false,
  summary: { ok: 20, changed: 0, failed: 0, pending: 0 },
  results: Array.from({ length: 20 }, (_, i) => ({ id: "sysctl[net.bench.k" + i + "]", result: true, comment: "unchanged" })),
  at: new Date(0).toISOString() };
const text = JSON.stringify(doc);
const loop = (fn) => { let n = 0; const end = performance.now() + workerData.ms; while (performance.now() < end) { for (let i = 0; i < 20; i++) fn(); n += 20; } return n; };
const verifies = loop(() => { if (!verify(null, message, publicKey, signature)) throw new Error("bad signature"); });
const json = loop(() => JSON.stringify(JSON.parse(text)));
parentPort.postMessage({ verifies, json });
`;

const ECHO = `
const { parentPort } = require("node:worker_threads");
const net = require("node:net");
const server = net.createServer((socket) => { socket.setNoDelay(true); socket.on("data", (d) => socket.write(d)); socket.on("error", () => {}); });
server.listen(0, "127.0.0.1", () => parentPort.postMessage({ port: server.address().port }));
`;

const PINGER = `
const { parentPort, workerData } = require("node:worker_threads");
const net = require("node:net");
const SIZE = 128, message = Buffer.alloc(SIZE, 7);
let rounds = 0, open = 0, ending = false;
const sockets = [];
const end = () => { ending = true; for (const s of sockets) s.destroy(); parentPort.postMessage({ rounds }); };
for (let i = 0; i < workerData.connections; i++) {
  const s = net.connect(workerData.port, "127.0.0.1", () => {
    s.setNoDelay(true);
    if (++open === workerData.connections) { setTimeout(end, workerData.ms); for (const t of sockets) t.write(message); }
  });
  let got = 0;
  s.on("data", (d) => { got += d.length; while (got >= SIZE) { got -= SIZE; if (!ending) { rounds++; s.write(message); } } });
  s.on("error", () => {});
  sockets.push(s);
}
`;

/** Loopback TCP round trips per second between two worker threads (see the module's comment), over `ms`. */
async function loopbackRoundTrips(ms: number, connections = 32): Promise<number> {
  const echo = new Worker(ECHO, { eval: true });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      echo.once("message", (m: { port: number }) => resolve(m.port));
      echo.once("error", reject);
    });
    const pinger = new Worker(PINGER, { eval: true, workerData: { port, ms, connections } });
    const rounds = await new Promise<number>((resolve, reject) => {
      pinger.once("message", (m: { rounds: number }) => resolve(m.rounds));
      pinger.once("error", reject);
    });
    await pinger.terminate();
    return Math.round((rounds * 1000) / ms);
  } finally {
    await echo.terminate();
  }
}

function runWorker(ms: number): Promise<{ verifies: number; json: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: { ms } });
    w.once("message", (m: { verifies: number; json: number }) => {
      resolve(m);
      void w.terminate();
    });
    w.once("error", reject);
  });
}

/**
 * Measures the machine (see the module's comment): about 5 x `ms` of wall time.
 * @param ms how long each loop runs, per phase (default 500 ms).
 * @throws Error when a worker cannot start or a signature does not verify.
 */
export async function calibrate(ms = 500): Promise<Calibration> {
  const cores = cpus().length;
  const one = await runWorker(ms);
  const all = await Promise.all(Array.from({ length: cores }, () => runWorker(ms)));
  const perSec = (n: number) => Math.round((n * 1000) / ms);
  return {
    cores,
    ed25519VerifyPerSec: { oneCore: perSec(one.verifies), allCores: perSec(all.reduce((s, r) => s + r.verifies, 0)) },
    jsonRoundTripPerSec: { oneCore: perSec(one.json), allCores: perSec(all.reduce((s, r) => s + r.json, 0)) },
    loopbackRoundTripsPerSec: await loopbackRoundTrips(ms),
  };
}

/** One line for the bench's table: this run's calibration, and the earlier run's beside it when known. */
export function calibrationLine(now: Calibration | undefined, prev: Calibration | undefined): string {
  const f = (c: Calibration) =>
    `Ed25519 verify ${c.ed25519VerifyPerSec.oneCore}/s on one core, ${c.ed25519VerifyPerSec.allCores}/s on ${c.cores}; JSON round trip ${c.jsonRoundTripPerSec.oneCore}/s, ${c.jsonRoundTripPerSec.allCores}/s` +
    (c.loopbackRoundTripsPerSec !== undefined ? `; loopback TCP round trips ${c.loopbackRoundTripsPerSec}/s` : "");
  if (!now) return "machine speed: not measured";
  return `machine speed: ${f(now)}${prev ? `   (previous run: ${f(prev)})` : ""}`;
}

if (import.meta.main) process.stdout.write(JSON.stringify(await calibrate()) + "\n");
