import { selectHosts, type Selectable } from "../select/limit.ts";

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
 * `--max-per KEY=N`: at most `count` hosts that share a value of label `key` in one
 * wave (`rack=1`: never two hosts of one rack at once). Hosts without the label
 * count as one more value among themselves, so a host whose label was forgotten is
 * never taken together with another such host.
 */
export interface MaxPer {
  key: string;
  count: number;
}

/**
 * Parses `--max-per` text, `KEY=N` (N a whole number from 1).
 * @throws Error naming `flag` and the expected form.
 */
export function parseMaxPer(text: string, flag = "--max-per"): MaxPer {
  const m = /^([a-z0-9][a-z0-9_.-]{0,62})=(\d{1,6})$/.exec(text.trim());
  if (!m || Number(m[2]) < 1) throw new Error(`${flag} takes LABEL=N (at most N hosts with the same value of that host label in one wave, N from 1), e.g. rack=1, not ${JSON.stringify(text)}`);
  return { key: m[1]!, count: Number(m[2]) };
}

/** A host to put in a wave: its name, role and (for `maxPer`) its inventory labels. */
export interface WaveHost {
  host: string;
  role: string;
  labels?: Readonly<Record<string, string>>;
}

/**
 * Waves of host names from `ordered` (as orderTargets gives them): a canary wave of one host,
 * then waves of at most `batch` hosts; a wave never mixes backends and VM hosts. With
 * `maxPer`, a wave also holds at most `maxPer.count` hosts of one value of label
 * `maxPer.key` (see MaxPer): a host that does not fit waits for the next wave, which
 * takes the waiting hosts first, so the order of `ordered` is kept as far as the limit allows.
 */
export function planWaves(ordered: readonly WaveHost[], batch: number, options: { maxPer?: MaxPer } = {}): string[][] {
  if (ordered.length === 0) return [];
  const waves: string[][] = [[ordered[0]!.host]];
  // Segments of one role, in order: a wave never spans two.
  const segments: WaveHost[][] = [];
  for (const t of ordered.slice(1)) {
    const last = segments.at(-1);
    if (last && last[0]!.role === t.role) last.push(t);
    else segments.push([t]);
  }
  const size = Math.max(1, batch);
  for (const segment of segments) {
    if (!options.maxPer) {
      for (let i = 0; i < segment.length; i += size) waves.push(segment.slice(i, i + size).map((t) => t.host));
      continue;
    }
    const { key, count } = options.maxPer;
    // A symbol cannot be a label value: hosts without the label share it.
    const NONE = Symbol("no label");
    const valueOf = (t: WaveHost): string | symbol => (t.labels && Object.hasOwn(t.labels, key) ? t.labels[key]! : NONE);
    let waiting = segment;
    while (waiting.length > 0) {
      const wave: string[] = [];
      const taken = new Map<string | symbol, number>();
      const left: WaveHost[] = [];
      for (const t of waiting) {
        const v = valueOf(t);
        const n = taken.get(v) ?? 0;
        if (wave.length < size && n < count) {
          wave.push(t.host);
          taken.set(v, n + 1);
        } else left.push(t);
      }
      waves.push(wave);
      waiting = left;
    }
  }
  return waves;
}

/**
 * `--limit`: the inventory hosts `patterns` select (see select/limit.ts selectHosts: globs over
 * name, group and role, label selectors `key=value`, `&` intersection, `!` exclusion). `unmatched`
 * lists the terms that match no host, which callers report as an error.
 * @throws LimitError for a term that cannot be read.
 */
export function limitHosts(inventory: { hosts: readonly Selectable[] }, patterns: readonly string[]): { hosts: Set<string>; unmatched: string[] } {
  return selectHosts(inventory.hosts, patterns);
}
