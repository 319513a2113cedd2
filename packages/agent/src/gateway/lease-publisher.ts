import { readFile } from "node:fs/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  LEASES_MAX_VALUE_BYTES,
  LeaseTable,
  decodeMessage,
  encodeMessage,
  hostKey,
  leasesBucket,
  parseDnsmasqLeases,
  type Lease,
} from "@netfleet/shared";
import { dnsmasqFiles } from "../resources/dnsmasq.ts";
import { putKey, readKey } from "../fleet/kv.ts";
import { CoalescingRunner } from "../coalescing-runner.ts";

/** This backend's site and key, where its dnsmasq lease files are, and its timings. */
export interface LeasePublisherOptions {
  site: string;
  /** This backend's inventory host name, its key in the leases bucket; undefined until enrolled (nothing is published). */
  host: () => string | undefined;
  /** The agent's run dir (`Toolbox.runDir`): lease files were `<runDir>/dnsmasq/<network>.leases` before they moved to the state dir. */
  runDir: string;
  /**
   * The agent's state dir (`Toolbox.stateDir`): lease files are
   * `<stateDir>/dnsmasq/<network>.leases`. A network whose file is not there
   * yet is read at its old place in the run dir (the agent moves it there
   * once, when it next starts that dnsmasq): never an empty table between.
   * Default `<runDir>/state`.
   */
  stateDir?: string;
  /** How often the lease files are read, ms (default 500). */
  pollMs?: number;
  /**
   * A changed lease file is read again after this long (ms, default 100) and
   * must read the same: dnsmasq rewrites its file in place (truncate, then
   * write), so a single read may catch it empty or cut short.
   */
  settleMs?: number;
  /** How often the stored value of our key is compared with what we published (republished when it differs or is gone), ms (default 30 s). */
  verifyMs?: number;
  /** A put waits this long for the stream's acknowledgement, ms (default 2000). */
  putTimeoutMs?: number;
  log?: (event: Record<string, unknown>) => void;
}

/** What was last stored in our key: the networks part (canonical JSON) and the exact bytes. */
interface Published {
  /** The lease files' contents it was parsed from. */
  raw: string;
  networks: string;
  bytes: Uint8Array;
  at: number;
}

/**
 * The backend side of lease distribution. While the assignment holds
 * dnsmasq resources (`configure` with their network names), it reads each
 * network's dnsmasq lease file every `pollMs`, parses the files with
 * `parseDnsmasqLeases`, and puts a `LeaseTable` `{host, at, networks: {net:
 * Lease[]}}` into this host's own key of `nf_<site>_leases` — once when it
 * starts (and after every reconnect), then whenever a network's leases
 * change. A missing file means no leases for that network. A file that
 * does not parse (or cannot be read) is logged, and nothing is published
 * for that change: never a table with one network missing or cut short.
 * `at` (epoch ms) is the read time, and always later than the `at` stored
 * in our key (a clock stepped back cannot make the VM hosts ignore us).
 * Publishing needs the agent's connection (`attach`); reading goes on
 * without it, and the latest table is published once one is there.
 */
export class LeasePublisher {
  /**
   * Counters since start: passes (file reads), unsettled (a changed file read
   * differently `settleMs` later: left for the next pass), unparsable (passes
   * that found a file that does not parse), published (puts acknowledged).
   */
  readonly stats = { passes: 0, unsettled: 0, unparsable: 0, published: 0 };
  private readonly options: LeasePublisherOptions;
  private readonly log: (event: Record<string, unknown>) => void;
  private networks: string[] = [];
  private nc: NatsConnection | undefined;
  /** Passes one at a time, polling every pollMs while there are networks; a configure or attach during a pass asks for one more right after it. */
  private readonly passes: CoalescingRunner;
  private stopped = false;
  private published: Published | undefined;
  /** Publish even when the table equals the last one (start, reconnect, our key found changed). */
  private dirty = true;
  /** Our key's stored `at` has been read since the last connection (so `at` only grows). */
  private seeded = false;
  private lastAt = 0;
  private lastVerify = 0;
  /** The raw file contents last seen settled, and the last ones reported as unparsable (logged once each). */
  private settledRaw = "";
  private badRaw = "";
  private failing = "";

  constructor(options: LeasePublisherOptions) {
    this.options = options;
    this.log = options.log ?? (() => {});
    this.passes = new CoalescingRunner({
      run: () => this.pass(),
      onError: (err) => this.log({ event: "leases-error", error: (err as Error).message }),
      nextRunAfter: () => (this.networks.length > 0 ? (this.options.pollMs ?? 500) : undefined),
    });
  }

  /** The networks (dnsmasq resource names) to publish; an empty list stops the polling (the key keeps its last value). */
  configure(networks: readonly string[]): void {
    const next = [...new Set(networks)].sort();
    if (next.join(",") === this.networks.join(",")) return;
    this.networks = next;
    this.dirty = true;
    this.settledRaw = "";
    if (this.stopped) return;
    // With none, the poll already scheduled finds nothing to read and polls no more.
    if (next.length > 0) void this.passes.request();
  }

  /** The connection to publish on: a new one (`fresh`) or the same one reconnected; either way the table is put again. */
  attach(nc: NatsConnection, fresh: boolean): void {
    if (fresh || this.nc !== nc) this.seeded = false;
    this.nc = nc;
    this.dirty = true;
    if (!this.stopped && this.networks.length > 0) void this.passes.request();
  }

  /** Stops polling; resolves once a read or put under way has finished. Our key keeps its value. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.passes.stop();
  }

  private async pass(): Promise<void> {
    const networks = this.networks;
    if (networks.length === 0) return;
    this.stats.passes++;
    const first = await this.readAll(networks);
    if (first === undefined) return;
    const firstKey = JSON.stringify(first);
    if (!this.dirty && firstKey === this.published?.raw) {
      // The files are as published: only check now and then that our key still holds it.
      const host = this.options.host();
      if (host && this.nc && !this.nc.isClosed()) await this.verify(this.nc, leasesBucket(this.options.site), hostKey(host));
      return;
    }
    if (firstKey !== this.settledRaw) {
      await new Promise((r) => setTimeout(r, this.options.settleMs ?? 100));
      if (this.stopped) return;
      const again = await this.readAll(networks);
      // Still being written: the next pass looks again.
      if (again === undefined || JSON.stringify(again) !== firstKey) {
        this.stats.unsettled++;
        return;
      }
      this.settledRaw = firstKey;
    }
    const table: Record<string, Lease[]> = {};
    for (const [i, network] of networks.entries()) {
      const path = this.files(network).leases;
      try {
        table[network] = parseDnsmasqLeases(first[i] ?? "", path);
      } catch (err) {
        this.stats.unparsable++;
        if (this.badRaw !== firstKey) this.log({ event: "leases-unparsable", network, file: path, error: (err as Error).message, publishing: false });
        this.badRaw = firstKey;
        return;
      }
    }
    this.badRaw = "";
    await this.publish(table, firstKey);
  }

  /** Each network's lease file (missing: ""); undefined (logged) when one cannot be read. */
  private async readAll(networks: readonly string[]): Promise<string[] | undefined> {
    const out: string[] = [];
    for (const network of networks) {
      const f = this.files(network);
      let text: string | undefined;
      for (const path of [f.leases, f.legacyLeases]) {
        try {
          text = await readFile(path, "utf8");
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
          this.log({ event: "leases-unreadable", network, file: path, error: (err as Error).message });
          return undefined;
        }
      }
      out.push(text ?? "");
    }
    return out;
  }

  private files(network: string) {
    return dnsmasqFiles(this.options.runDir, network, this.options.stateDir);
  }

  private async publish(networks: Record<string, Lease[]>, raw: string): Promise<void> {
    const host = this.options.host();
    const nc = this.nc;
    if (!host || !nc || nc.isClosed()) return;
    const key = hostKey(host);
    const bucket = leasesBucket(this.options.site);
    const canonical = JSON.stringify(networks);
    if (!this.seeded) {
      // Our key's `at` is the floor: VM hosts ignore a table older than the one they have.
      const stored = await readKey(nc, bucket, key).catch(() => undefined);
      if (stored?.operation === "PUT") {
        try {
          this.lastAt = Math.max(this.lastAt, decodeMessage(LeaseTable, "own leases key", stored.data).at);
        } catch {
          // Not a table of ours: replaced by the next put.
        }
      }
      this.seeded = true;
    }
    if (!this.dirty && this.published?.networks === canonical) {
      // The files changed but not the leases in them (e.g. a hostname): nothing to put.
      this.published.raw = raw;
      await this.verify(nc, bucket, key);
      return;
    }
    const at = Math.max(Date.now(), this.lastAt + 1);
    const value: LeaseTable = { host, at, networks };
    const bytes = encodeMessage(value);
    if (bytes.length > LEASES_MAX_VALUE_BYTES) {
      this.report(`table of ${bytes.length} bytes is over the bucket's limit of ${LEASES_MAX_VALUE_BYTES}`);
      return;
    }
    try {
      await putKey(nc, bucket, key, bytes, this.options.putTimeoutMs ?? 2000);
    } catch (err) {
      this.report((err as Error).message);
      return;
    }
    this.lastAt = at;
    this.published = { raw, networks: canonical, bytes, at };
    this.dirty = false;
    this.failing = "";
    this.lastVerify = Date.now();
    this.stats.published++;
    this.log({ event: "leases-published", host, at, bytes: bytes.length, leases: Object.fromEntries(Object.entries(networks).map(([n, l]) => [n, l.length])) });
  }

  /** Now and then: is our key still what we put there (not rolled up, purged or overwritten)? If not, put it again next pass. */
  private async verify(nc: NatsConnection, bucket: string, key: string): Promise<void> {
    if (Date.now() - this.lastVerify < (this.options.verifyMs ?? 30_000)) return;
    this.lastVerify = Date.now();
    const stored = await readKey(nc, bucket, key).catch(() => null);
    if (stored === null) return; // not answered: try again next time
    if (stored?.operation === "PUT" && Buffer.from(stored.data).equals(Buffer.from(this.published!.bytes))) return;
    this.log({ event: "leases-key-changed", host: key, republishing: true });
    this.dirty = true;
  }

  /** A put that failed: logged when the reason changes (not every 500 ms while NATS is away); retried next pass. */
  private report(error: string): void {
    if (error !== this.failing) this.log({ event: "leases-publish-failed", error });
    this.failing = error;
  }
}
