import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import PQueue from "p-queue";
import {
  DecodeError,
  LeaseTable,
  NETWORK_NAME,
  decodeMessage,
  decodeNetworkLeases,
  hostKey,
  kvSubject,
  leasesBucket,
  type Lease,
  type NetworkLeases,
} from "@netfleet/shared";
import { leasesPath } from "../resources/vm-port-policy.ts";
import { readKey, type StoredEntry } from "../fleet/kv.ts";
import { writeOwned } from "../write-owned.ts";

/**
 * `<runDir>/leases/<network>.json`: one network's leases as a VM host keeps
 * them (a `NetworkLeases` document), the file vm-port-policy reads (its
 * `leasesPath`). @throws TypeError when `network` is not a network name.
 */
export function networkLeasesPath(runDir: string, network: string): string {
  if (!NETWORK_NAME.test(network)) throw new TypeError(`network ${JSON.stringify(network)} is not a network name`);
  return leasesPath(runDir, network);
}

/** Where the follower writes lease files, and whom it tells when one changes. */
export interface LeaseFollowerOptions {
  site: string;
  /** The agent's run dir (`Toolbox.runDir`): files go to `<runDir>/leases/<network>.json`. */
  runDir: string;
  /** Called (awaited) after some networks' files changed on disk: the daemon's ports pass. */
  onChange: (networks: string[]) => Promise<void> | void;
  /** A hinted table not yet readable by direct get (a replica behind) is asked for again this many times, 100 ms apart (default 10). */
  readRetries?: number;
  log?: (event: Record<string, unknown>) => void;
}

interface Source {
  /** The backend host: its key in the leases bucket. */
  host: string;
  /** Networks of this host's vm-port-policy resources that take their leases from it. */
  networks: Set<string>;
  /** `at` of the newest table accepted (or found in our files at start): anything older is refused. */
  floor: number;
  /** The last table accepted. */
  table: LeaseTable | undefined;
  sub: Subscription | undefined;
  seeded: boolean;
}

/**
 * The VM-host side of lease distribution. For each backend named as
 * `leaseSource` by this host's vm-port-policy resources (`configure`: source
 * → networks), it watches that backend's key in `nf_<site>_leases` the way
 * the agent watches its desired key, without consumers: a core subscription
 * on `$KV.<bucket>.<source>` hears every write, and a direct get reads what
 * the stream stored (a core message may be a write the stream refused); the
 * key is also read once on every (re)connection. Every message and every
 * stored value is decoded with zod; one that does not decode, names another
 * host than the source, or is older (`at`) than the table in force is
 * logged and changes nothing. For an accepted table each network's file
 * `<runDir>/leases/<network>.json` is written — atomically (temp file
 * beside it, then rename; mode 0644) and only when its host or leases
 * differ from what the file holds (a new `at` alone rewrites nothing) — and
 * `onChange` runs once with the networks whose file changed. A network the
 * table does not name gets an empty lease list. The files stay when NATS is
 * away: the flows work on from the last known leases.
 */
export class LeaseFollower {
  private readonly options: LeaseFollowerOptions;
  private readonly log: (event: Record<string, unknown>) => void;
  private readonly sources = new Map<string, Source>();
  private nc: NatsConnection | undefined;
  /** Reads and writes, one at a time in the order asked. */
  private readonly work = new PQueue({ concurrency: 1 });
  private stopped = false;

  constructor(options: LeaseFollowerOptions) {
    this.options = options;
    this.log = options.log ?? (() => {});
  }

  /**
   * Which backend feeds which networks (from the assignment's vm-port-policy
   * resources with `leaseSource`). New sources are subscribed and read at
   * once; a network added to a known source gets its file from the table in
   * force. Files of networks no longer named are left as they are.
   */
  configure(sources: ReadonlyMap<string, readonly string[]>): void {
    if (this.stopped) return;
    for (const [host, source] of this.sources) {
      if (sources.has(host)) continue;
      source.sub?.unsubscribe();
      this.sources.delete(host);
    }
    for (const [host, networks] of sources) {
      const known = this.sources.get(host);
      const next = new Set(networks);
      if (known && [...next].every((n) => known.networks.has(n)) && next.size === known.networks.size) continue;
      const source: Source = known ?? { host: hostKey(host), networks: next, floor: 0, table: undefined, sub: undefined, seeded: false };
      source.networks = next;
      this.sources.set(host, source);
      if (!known && this.nc) this.subscribe(this.nc, source);
      void this.queue(async () => {
        await this.seed(source);
        if (source.table) await this.write(source, source.table);
        await this.read(source, 0);
      });
    }
  }

  /** The connection to follow on: subscribes again on a new one (`fresh`), and reads every source's key either way. */
  attach(nc: NatsConnection, fresh: boolean): void {
    if (this.stopped) return;
    const renew = fresh || this.nc !== nc;
    this.nc = nc;
    for (const source of this.sources.values()) {
      if (renew) {
        source.sub?.unsubscribe();
        this.subscribe(nc, source);
      }
      void this.queue(() => this.read(source, 0));
    }
  }

  /** Stops following (unsubscribes); resolves once work under way has finished. The files stay. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const source of this.sources.values()) source.sub?.unsubscribe();
    await this.work.onIdle();
  }

  /** Waits for queued reads and writes (tests). */
  idle(): Promise<void> {
    return this.work.onIdle();
  }

  /** Queues a read or write (skipped once stopped); its error is logged, never thrown. */
  private queue(work: () => Promise<void>): Promise<void> {
    const task = async (): Promise<void> => {
      if (!this.stopped) await work();
    };
    return this.work.add(task).catch((err: unknown) => this.log({ event: "leases-error", error: (err as Error).message }));
  }

  private subscribe(nc: NatsConnection, source: Source): void {
    let sub: Subscription;
    try {
      sub = nc.subscribe(kvSubject(leasesBucket(this.options.site), source.host));
    } catch (err) {
      this.log({ event: "leases-error", source: source.host, error: (err as Error).message });
      return;
    }
    source.sub = sub;
    void (async () => {
      for await (const msg of sub) {
        // The message is only a hint (and refused outright when it is no table of the source's); the direct get decides.
        const table = this.check(source, msg.subject, msg.data);
        if (table) void this.queue(() => this.read(source, table.at));
      }
    })();
  }

  /** The table when it decodes, names the source and is not older than the one in force; else undefined, logged. */
  private check(source: Source, where: string, data: Uint8Array): LeaseTable | undefined {
    let table: LeaseTable;
    try {
      table = decodeMessage(LeaseTable, where, data);
    } catch (err) {
      const error = err instanceof DecodeError ? err.message : `${where}: ${(err as Error).message}`;
      this.log({ event: "leases-rejected", source: source.host, reason: "decode", error: error.slice(0, 500) });
      return undefined;
    }
    if (table.host !== source.host) {
      this.log({ event: "leases-rejected", source: source.host, reason: "host", error: `${where}: table of ${table.host}, not of ${source.host}` });
      return undefined;
    }
    if (table.at < source.floor) {
      this.log({ event: "leases-rejected", source: source.host, reason: "older", error: `${where}: at ${table.at} is older than ${source.floor}` });
      return undefined;
    }
    return table;
  }

  /** Reads the source's key (until it holds a table at least as new as `hinted`, briefly) and applies it when it passes `check`. */
  private async read(source: Source, hinted: number): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed() || this.sources.get(source.host) !== source) return;
    await this.seed(source);
    const bucket = leasesBucket(this.options.site);
    const retries = this.options.readRetries ?? 10;
    let stored: StoredEntry | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        stored = await readKey(nc, bucket, source.host);
      } catch (err) {
        this.log({ event: "leases-read-failed", source: source.host, error: (err as Error).message });
        return;
      }
      if (!stored || stored.operation !== "PUT" || hinted === 0 || attempt >= retries) break;
      let at = 0;
      try {
        at = decodeMessage(LeaseTable, "leases", stored.data).at;
      } catch {
        break;
      }
      if (at >= hinted) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!stored || stored.operation !== "PUT") {
      this.log({ event: "leases-none", source: source.host, keeping: source.floor });
      return;
    }
    const table = this.check(source, `kv ${bucket}/${source.host}@${stored.seq}`, stored.data);
    if (!table) return;
    source.floor = table.at;
    source.table = table;
    await this.write(source, table);
  }

  /** Writes each network's file whose host or leases differ, then calls onChange with those networks. */
  private async write(source: Source, table: LeaseTable): Promise<void> {
    const changed: string[] = [];
    for (const network of [...source.networks].sort()) {
      const doc: NetworkLeases = { network, host: table.host, at: table.at, leases: sortLeases(table.networks[network] ?? []) };
      const path = networkLeasesPath(this.options.runDir, network);
      const current = await readFile(path, "utf8").then(
        (text) => decodeNetworkLeases(path, text),
        () => undefined,
      );
      if (current && current.host === doc.host && sameLeases(current.leases, doc.leases)) continue;
      await writeAtomic(path, `${JSON.stringify(doc)}\n`);
      changed.push(network);
      this.log({ event: "leases-written", network, source: table.host, at: table.at, leases: doc.leases.length });
    }
    if (changed.length > 0) await this.options.onChange(changed);
  }

  /** The floor starts at the newest `at` among our files that came from this source (a restarted agent refuses older tables too). */
  private async seed(source: Source): Promise<void> {
    if (source.seeded) return;
    source.seeded = true;
    for (const network of source.networks) {
      const path = networkLeasesPath(this.options.runDir, network);
      try {
        const doc = decodeNetworkLeases(path, await readFile(path, "utf8"));
        if (doc.host === source.host) source.floor = Math.max(source.floor, doc.at);
      } catch {
        // No file yet, or not ours to trust: it is replaced by the first table.
      }
    }
  }
}

function sortLeases(leases: readonly Lease[]): Lease[] {
  return [...leases].sort((a, b) => (a.ip !== b.ip ? (a.ip < b.ip ? -1 : 1) : a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : a.expires - b.expires));
}

function sameLeases(a: readonly Lease[], b: readonly Lease[]): boolean {
  return JSON.stringify(sortLeases(a)) === JSON.stringify(sortLeases(b));
}

/**
 * Writes `text` to `path` atomically (write-file-atomic: a temp file of its
 * own beside it, fsynced, then renamed over `path`), mode 0644; the
 * directory is made (0755) when missing. @throws the fs error.
 */
async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await writeOwned(path, text, 0o644);
}
