import picomatch from "picomatch";

/** A number of hosts: `--batch 3` is `{ count: 3 }`, `--batch 25%` is `{ percent: 25 }`. */
export type Amount = { count: number } | { percent: number };

/**
 * Parses `--batch`/`--max-fail` text: a whole number of hosts or a percentage up to 100%.
 * Throws an Error naming `flag` on anything else.
 */
export function parseAmount(text: string, flag: string): Amount {
  const m = /^(\d+)(%?)$/.exec(text.trim());
  if (!m) throw new Error(`${flag} takes a number of hosts or a percentage (e.g. 2 or 25%), not ${JSON.stringify(text)}`);
  const n = Number(m[1]);
  if (m[2]) {
    if (n > 100) throw new Error(`${flag}: a percentage is at most 100%`);
    return { percent: n };
  }
  return { count: n };
}

/** An amount as a number of hosts out of `total` (a percentage rounds down), never below `atLeast`. */
export function resolveAmount(amount: Amount, total: number, atLeast: number): number {
  const n = "count" in amount ? amount.count : Math.floor((amount.percent * total) / 100);
  return Math.max(atLeast, n);
}

/** Backends first (they hold the gateways the VM hosts need), then VM hosts; by name within a role. */
export function orderTargets<T extends { host: string; role: string }>(targets: readonly T[]): T[] {
  const rank = (t: T) => (t.role === "backend" ? 0 : 1);
  return [...targets].sort((a, b) => rank(a) - rank(b) || a.host.localeCompare(b.host));
}

/**
 * Waves of host names from `ordered` (as orderTargets gives them): a canary wave of one host,
 * then waves of at most `batch` hosts; a wave never mixes backends and VM hosts.
 */
export function planWaves(ordered: readonly { host: string; role: string }[], batch: number): string[][] {
  if (ordered.length === 0) return [];
  const waves: string[][] = [[ordered[0]!.host]];
  let wave: string[] = [];
  let role = ordered[0]!.role;
  for (const t of ordered.slice(1)) {
    if (wave.length > 0 && (wave.length >= batch || t.role !== role)) {
      waves.push(wave);
      wave = [];
    }
    role = t.role;
    wave.push(t.host);
  }
  if (wave.length) waves.push(wave);
  return waves;
}

/**
 * `--limit`: the inventory hosts whose name, one of whose groups, or whose role matches one of
 * `patterns` (globs: `*` any run of characters, `?` one). `unmatched` lists the patterns that match
 * no host, which callers report as an error.
 */
export function limitHosts(inventory: { hosts: readonly { name: string; groups: readonly string[]; role: string }[] }, patterns: readonly string[]): { hosts: Set<string>; unmatched: string[] } {
  const hosts = new Set<string>();
  const unmatched: string[] = [];
  for (const p of patterns) {
    // Only * and ? are special, as always: brackets, braces and extglobs stay literal. A leading "!" stays
    // literal too (it matches nothing): read as "all but", it would roll out to the whole site.
    const matches = picomatch(p, { nonegate: true, nobrace: true, nobracket: true, noextglob: true });
    const hit = inventory.hosts.filter((h) => matches(h.name) || h.groups.some((g) => matches(g)) || matches(h.role));
    if (hit.length === 0) unmatched.push(p);
    for (const h of hit) hosts.add(h.name);
  }
  return { hosts, unmatched };
}
