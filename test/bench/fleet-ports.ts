import { createServer } from "node:net";

/** The fleet benches' ports: 27000-27999 (below 32768, the kernel's ephemeral range: see test/nats/harness.ts startSite). */
const LOW = 27000;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * A base port P for NatsServer.start (client P..P+2, cluster P+100..P+102,
 * monitoring P+200..P+202, for up to 3 nodes) with every one of them free
 * on loopback, among P = 27000 + 3k (k < 33). `nodes`: how many of each to check.
 * @throws Error when none is free.
 */
export async function benchPort(seed: number, nodes = 1): Promise<number> {
  for (let i = 0; i < 33; i++) {
    const p = LOW + ((seed + i + Math.floor(Math.random() * 33)) % 33) * 3;
    const ports = [0, 100, 200].flatMap((off) => Array.from({ length: nodes }, (_, n) => p + off + n));
    let free = true;
    for (const port of ports) if (!(free = await portFree(port))) break;
    if (free) return p;
  }
  throw new Error("bench: no free port set found in 27000-27302");
}
