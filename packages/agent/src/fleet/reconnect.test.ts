/**
 * The agent's reconnect schedule (connection.ts Backoff, natsReconnectOptions)
 * run inside a model of nats.js's reconnect loop, and the offsets of its
 * periodic timers (heartbeat.ts everyWithOffset).
 *
 * The model is nats.js v3.4.0, line for line where it matters (repository
 * nats-io/nats.js, tag v3.4.0):
 * - core/src/protocol.ts `dodialLoop`, lines 650-740: each pass calls
 *   `reconnectDelayHandler()` (660), selects a server (663; none left: throw,
 *   664-671), dials it only if `lastConnect === 0 || lastConnect + wait <= now`
 *   (674), calling `reconnectToServer` first (680) and setting `lastConnect`
 *   (716); a failed dial before the first connection either continues
 *   (`waitOnFirstConnect`, 723) or removes the server (726), and counts against
 *   `maxReconnectAttempts` (729-732; -1: never); a server not yet due makes the
 *   loop sleep `min(wait, lastConnect + wait - now)` (735-737) and pass again.
 * - core/src/servers.ts `selectServer`, line 277: the first call returns the
 *   current server, every later one takes the head of the pool and moves it
 *   to the tail; `removeCurrentServer` splices the current one out.
 * The model's clock is virtual: a refused dial costs `refuseMs`, a dial that
 * connects `connectMs`.
 */
import { describe, expect, it, vi } from "vitest";
import { Backoff, DEFAULT_RECONNECT_MAX_MS, natsReconnectOptions } from "./connection.ts";
import { everyWithOffset } from "./heartbeat.ts";

interface ModelServer {
  name: string;
  /** Whether a dial at this virtual time connects. */
  up: (t: number) => boolean;
  lastConnect: number;
  reconnects: number;
}

interface LoopOptions {
  reconnectDelayHandler: () => number;
  reconnectToServer?: () => null;
  maxReconnectAttempts: number;
  waitOnFirstConnect: boolean;
}

interface LoopResult {
  /** Virtual time the loop ended (connected, or threw). */
  at: number;
  connected: ModelServer | undefined;
  dials: { t: number; server: string }[];
  handlerCalls: number;
}

/** servers.ts Servers: a pool with a current server and first-select semantics. */
class ModelPool {
  firstSelect = true;
  current: ModelServer;
  readonly servers: ModelServer[];
  constructor(servers: ModelServer[]) {
    this.servers = servers;
    this.current = servers[0]!;
  }
  selectServer(): ModelServer | undefined {
    if (this.firstSelect) {
      this.firstSelect = false;
      return this.current;
    }
    const t = this.servers.shift();
    if (t) {
      this.servers.push(t);
      this.current = t;
    }
    return t;
  }
  removeCurrentServer(): void {
    const i = this.servers.indexOf(this.current);
    if (i >= 0) this.servers.splice(i, 1);
  }
}

/** protocol.ts dodialLoop (650-740) on a virtual clock starting at `now`. */
function dodialLoop(pool: ModelPool, o: LoopOptions, state: { connectedOnce: boolean }, now: number, refuseMs = 1, connectMs = 1): LoopResult {
  const dials: LoopResult["dials"] = [];
  let handlerCalls = 0;
  for (let pass = 0; pass < 1_000_000; pass++) {
    const wait = o.reconnectDelayHandler(); // 660
    handlerCalls++;
    let maxWait = wait;
    const srv = pool.selectServer(); // 663
    if (!srv) return { at: now, connected: undefined, dials, handlerCalls }; // 664-671: throws
    if (srv.lastConnect === 0 || srv.lastConnect + wait <= now) {
      // 674
      o.reconnectToServer?.(); // 680 (null: dial the server selected)
      srv.lastConnect = now; // 716
      dials.push({ t: now, server: srv.name });
      if (srv.up(now)) {
        now += connectMs;
        state.connectedOnce = true;
        srv.reconnects = 0;
        return { at: now, connected: srv, dials, handlerCalls };
      }
      now += refuseMs;
      if (!state.connectedOnce) {
        if (o.waitOnFirstConnect) continue; // 723
        pool.removeCurrentServer(); // 726
      }
      srv.reconnects++;
      if (o.maxReconnectAttempts !== -1 && srv.reconnects >= o.maxReconnectAttempts) pool.removeCurrentServer(); // 729-732
    } else {
      maxWait = Math.min(maxWait, srv.lastConnect + wait - now); // 735
      now += maxWait; // 736-737
    }
  }
  throw new Error("model did not settle");
}

/** A deterministic source of numbers in [0, 1) (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The agent's options as connectNats gives them to nats.js, in the model's shape. */
function agentLoop(backoff: Backoff, waitOnFirstConnect = false): LoopOptions {
  const o = natsReconnectOptions(backoff);
  return {
    reconnectDelayHandler: o.reconnectDelayHandler!,
    reconnectToServer: () => o.reconnectToServer!([], null) as null,
    maxReconnectAttempts: o.maxReconnectAttempts!,
    waitOnFirstConnect,
  };
}

/** The model's epoch: Date.now() is never 0 (0 is nats.js's "never dialled", line 674). */
const T0 = 1_700_000_000_000;

/** Times relative to T0. */
function relative(r: LoopResult): LoopResult {
  return { ...r, at: r.at - T0, dials: r.dials.map((d) => ({ ...d, t: d.t - T0 })) };
}

/**
 * An agent connected to `servers` since t = -60 s; at t = 0 its server goes
 * away (the outage): the reconnect loop runs until it is connected again.
 * Times in the result are relative to the outage.
 */
function reconnectAfterOutage(backoff: Backoff, servers: ModelServer[]): LoopResult {
  for (const s of servers) s.lastConnect = 0;
  const pool = new ModelPool(servers);
  // The first connection, at -60 s (the current server).
  const first = dodialLoop(pool, agentLoop(backoff), { connectedOnce: false }, T0 - 60_000);
  expect(first.connected).toBe(servers[0]);
  backoff.reset();
  return relative(dodialLoop(pool, agentLoop(backoff), { connectedOnce: true }, T0));
}

/** One server, down from t = 0 to t = outageMs (relative to T0). */
function server(name: string, outageMs: number): ModelServer {
  return { name, up: (t) => t < T0 || t >= T0 + outageMs, lastConnect: 0, reconnects: 0 };
}

/**
 * The reconnect-delay handler the agent had before issue 15 (git a4c1932,
 * packages/agent/src/fleet/connection.ts): doubling on every call from 1 s to
 * 32 s, scaled by 0.5-1.5.
 */
function oldHandler(random: () => number): () => number {
  let attempt = 0;
  return () => Math.round(Math.min(32_000, 1000 * 2 ** Math.min(attempt++, 20)) * (0.5 + random()));
}

describe("the reconnect schedule in a model of nats.js's reconnect loop (v3.4.0 protocol.ts dodialLoop)", () => {
  it("waits one step longer per dial, not per pass, up to the cap (worst jitter: each wait is its whole step)", () => {
    const backoff = new Backoff({ reconnectTimeWaitMs: 250, reconnectMaxMs: 5000 }, () => 0.999999);
    const r = reconnectAfterOutage(backoff, [server("a", 60_000)]);
    const gaps = r.dials.slice(1).map((d, i) => d.t - r.dials[i]!.t);
    // The first dial is at once (the server's lastConnect is the old connection's); then 250, 500, ... per dial.
    expect(r.dials[0]!.t).toBe(0);
    expect(gaps.slice(0, 7)).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
    expect(Math.max(...gaps)).toBe(5000);
    // nats.js asked for the delay on every pass (sleeps included): more calls than dials.
    expect(r.handlerCalls).toBeGreaterThan(r.dials.length);
    expect(r.at - 60_000).toBeLessThanOrEqual(5000 + 1);
  });

  it("with the best jitter each wait is half its step", () => {
    const backoff = new Backoff({ reconnectTimeWaitMs: 250, reconnectMaxMs: 5000 }, () => 0);
    const r = reconnectAfterOutage(backoff, [server("a", 20_000)]);
    const gaps = r.dials.slice(1).map((d, i) => d.t - r.dials[i]!.t);
    expect(gaps.slice(0, 7)).toEqual([125, 250, 500, 1000, 2000, 2500, 2500]);
  });

  it("reproduces the issue with the old handler: back ~16-48 s after a 1 s outage, past the 20 s confirmation deadline", () => {
    const backs: number[] = [];
    for (let seed = 1; seed <= 200; seed++) {
      const pool = new ModelPool([server("a", 1000)]);
      const first = dodialLoop(pool, { reconnectDelayHandler: oldHandler(seeded(seed)), maxReconnectAttempts: -1, waitOnFirstConnect: false }, { connectedOnce: false }, T0 - 60_000);
      expect(first.connected).toBeDefined();
      const r = relative(dodialLoop(pool, { reconnectDelayHandler: oldHandler(seeded(seed + 1000)), maxReconnectAttempts: -1, waitOnFirstConnect: false }, { connectedOnce: true }, T0));
      backs.push(r.at);
      // Two dials: at once (refused), then the next only when the doubled wait happened to be drawn small enough.
      expect(r.dials.length).toBeLessThanOrEqual(3);
    }
    backs.sort((a, b) => a - b);
    console.log(`old handler, 1 s outage, 200 agents: back after ${backs[0]}..${backs.at(-1)} ms (median ${backs[100]})`);
    // The issue measured 48-49 s with 1,000 and 5,000 agents; most agents miss a 20 s confirmation deadline.
    expect(backs.at(-1)).toBeGreaterThan(40_000);
    expect(backs[100]).toBeGreaterThan(20_000);
  });

  it("after an outage of 1 s, 10 s and 60 s, every agent of a 5,000-agent fleet is back within the cap (5 s) of the server's return", () => {
    const random = seeded(15);
    const figures: string[] = [];
    for (const outageMs of [1000, 10_000, 60_000]) {
      const late: number[] = [];
      for (let agent = 0; agent < 5000; agent++) {
        const r = reconnectAfterOutage(new Backoff({}, random), [server("a", outageMs)]);
        late.push(r.at - outageMs);
      }
      late.sort((a, b) => a - b);
      const worst = late.at(-1)!;
      figures.push(`${outageMs / 1000} s outage: back ${late[0]}..${worst} ms after the server (median ${late[2500]})`);
      // The cap bounds it: the last dial before the return was at most one cap earlier.
      expect(worst).toBeLessThanOrEqual(DEFAULT_RECONNECT_MAX_MS + 1);
      // Jitter spreads the returns: not all in one instant.
      expect(late[4750]! - late[250]!).toBeGreaterThan(outageMs >= 10_000 ? 1500 : 100);
    }
    console.log(figures.join("\n"));
    // At the worst jitter: 1 s outage -> dials at 0, 250, 750, 1750 (each wait counts from its dial's start, line 716):
    // connected at 1751, 751 ms after the server.
    const worst1 = reconnectAfterOutage(new Backoff({}, () => 0.999999), [server("a", 1000)]);
    expect(worst1.dials.map((d) => d.t)).toEqual([0, 250, 750, 1750]);
    expect(worst1.at).toBe(1751);
  });

  it("with three servers, a lost server's clients dial the next one at once; all down, a server back is reached within two caps", () => {
    // The server in use dies, the others are up: the next server is dialled in the same instant.
    const one = reconnectAfterOutage(new Backoff({}, seeded(3)), [server("a", 60_000), server("b", 0), server("c", 0)]);
    expect(one.connected?.name).not.toBe("a");
    expect(one.at).toBeLessThanOrEqual(3);

    // All three down; b is back at 20 s. The loop moves on to the next server on every pass, a sleep included
    // (protocol.ts 663, servers.ts 277): after sleeping until one server is due it checks the next, so a server
    // can wait two of the (per-dial) waits between its dials: two caps at most.
    const late: number[] = [];
    for (let seed = 1; seed <= 1000; seed++) {
      const backoff = new Backoff({}, seeded(seed));
      const r = reconnectAfterOutage(backoff, [server("a", 30_000), server("b", 20_000), server("c", 25_000)]);
      expect(r.connected?.name).toBe("b");
      late.push(r.at - 20_000);
    }
    late.sort((x, y) => x - y);
    console.log(`3 servers all down, one back at 20 s: reached ${late[0]}..${late.at(-1)} ms after (median ${late[500]})`);
    expect(late.at(-1)).toBeLessThanOrEqual(2 * DEFAULT_RECONNECT_MAX_MS + 3);
  });

  it("connecting from scratch (connectNats: one dial per server per attempt, then backoff.next()) reaches a server back within the cap", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const backoff = new Backoff({}, seeded(seed));
      const servers = [server("a", 12_000), server("b", 12_000)];
      let now = T0;
      let attempts = 0;
      for (;;) {
        for (const s of servers) s.lastConnect = 0;
        // A fresh connection object per attempt: a fresh pool, nobody connected yet, waitOnFirstConnect off.
        const r = dodialLoop(new ModelPool([...servers]), agentLoop(backoff, false), { connectedOnce: false }, now);
        attempts++;
        expect(r.dials.length).toBe(r.connected ? r.dials.length : 2);
        now = r.at;
        if (r.connected) break;
        now += backoff.next(); // retrySchedule's pause
      }
      expect(now - T0 - 12_000).toBeLessThanOrEqual(DEFAULT_RECONNECT_MAX_MS + 3);
      expect(attempts).toBeGreaterThan(3);
    }
  });

  it("the cap is at least the first wait; reset starts over; nats.js is told never to give up and to dial the server it picked", () => {
    const b = new Backoff({ reconnectTimeWaitMs: 2000, reconnectMaxMs: 500 }, () => 0.999999);
    expect(b.capMs).toBe(2000);
    const c = new Backoff({ reconnectTimeWaitMs: 100, reconnectMaxMs: 1000 }, () => 0.999999);
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      c.dialed();
      waits.push(c.wait());
      expect(c.wait()).toBe(c.next());
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000]);
    c.reset();
    c.dialed();
    expect(c.wait()).toBe(100);
    const o = natsReconnectOptions(c);
    expect(o.maxReconnectAttempts).toBe(-1);
    expect(o.reconnectToServer!([], null)).toBeNull();
    expect(c.wait()).toBe(200);
    expect(o.reconnectDelayHandler!()).toBe(200);
    expect(o.reconnectDelayHandler!()).toBe(200);
  });
});

describe("periodic timers start at a random offset (heartbeat.ts everyWithOffset)", () => {
  it("1,000 agents' heartbeats spread over the whole period, then keep the period", () => {
    vi.useFakeTimers();
    try {
      const period = 15_000;
      const firsts: number[] = [];
      const timers = Array.from({ length: 1000 }, (_, i) => {
        const fires: number[] = [];
        const t0 = Date.now();
        const timer = everyWithOffset(() => fires.push(Date.now() - t0), period);
        return { timer, fires, i };
      });
      vi.advanceTimersByTime(period * 3 - 1);
      for (const { timer, fires } of timers) {
        expect(fires[0]).toBe(timer.offsetMs);
        expect(fires.slice(1).map((f, k) => f - fires[k]!)).toEqual([period, period]);
        firsts.push(fires[0]!);
        timer.stop();
      }
      // Ten slices of the period each hold 5-15 % of the first beats (uniform: 10 %).
      const buckets = new Array(10).fill(0) as number[];
      for (const f of firsts) buckets[Math.floor((f / period) * 10)]!++;
      for (const b of buckets) {
        expect(b).toBeGreaterThan(50);
        expect(b).toBeLessThan(150);
      }
      expect(Math.min(...firsts)).toBeLessThan(period * 0.02);
      expect(Math.max(...firsts)).toBeGreaterThan(period * 0.98);
      // Nothing fires after stop.
      const n = timers.reduce((s, t) => s + t.fires.length, 0);
      vi.advanceTimersByTime(period * 2);
      expect(timers.reduce((s, t) => s + t.fires.length, 0)).toBe(n);
    } finally {
      vi.useRealTimers();
    }
  });

  it("a timer stopped before its first run never runs", () => {
    vi.useFakeTimers();
    try {
      let runs = 0;
      const t = everyWithOffset(() => runs++, 1000, () => 0.5);
      expect(t.offsetMs).toBe(500);
      vi.advanceTimersByTime(499);
      t.stop();
      vi.advanceTimersByTime(5000);
      expect(runs).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
