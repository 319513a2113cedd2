import type { Msg } from "@nats-io/transport-node";
import { DecodeError, Heartbeat, Report, decodeMessage } from "@netfleet/shared";
import type { AppliedView } from "./applied.ts";
import type { HostRegistry } from "./registry.ts";

/**
 * When each approved agent was last heard from, from its reports and
 * heartbeats: kept in memory (status shows it), and written to the host's
 * registry record at most every `lastSeenWriteMs` per host (a heartbeat per
 * host every few seconds would otherwise be a KV write each). Reports are
 * also handed to the applied view, so a rollout waiting for one hears it at once.
 */
export class Presence {
  private readonly site: string;
  private readonly registry: HostRegistry;
  private readonly applied: AppliedView;
  private readonly lastSeenWriteMs: number;
  private readonly heard = new Map<string, { at: string; written: number }>();

  constructor(site: string, registry: HostRegistry, applied: AppliedView, lastSeenWriteMs: number) {
    this.site = site;
    this.registry = registry;
    this.applied = applied;
    this.lastSeenWriteMs = lastSeenWriteMs;
  }

  /**
   * A report on `nf.<site>.report.<host>`.
   * @throws DecodeError when it does not decode or names another host or site.
   */
  async report(msg: Msg, host: string): Promise<void> {
    const report = decodeMessage(Report, msg.subject, msg.data);
    if (report.host !== host || report.site !== this.site) throw new DecodeError(msg.subject, "host", "report names another host or site");
    this.seen(host, report.at);
    this.applied.offer(report);
  }

  /**
   * A heartbeat on `nf.<site>.heartbeat.<host>`.
   * @throws DecodeError when it does not decode or names another host or site.
   */
  async heartbeat(msg: Msg, host: string): Promise<void> {
    const hb = decodeMessage(Heartbeat, msg.subject, msg.data);
    if (hb.host !== host || hb.site !== this.site) throw new DecodeError(msg.subject, "host", "heartbeat names another host or site");
    const written = this.seen(host, hb.at);
    if (Date.now() - written >= this.lastSeenWriteMs) {
      await this.registry.mutate(host, (cur) => cur && { ...cur, lastSeen: hb.at });
      this.heard.set(host, { at: hb.at, written: Date.now() });
    }
  }

  /** The latest time (ISO 8601, as the agent sent it) this process heard from the host, if any. */
  lastSeen(host: string): string | undefined {
    return this.heard.get(host)?.at;
  }

  /** Records `at` if later than what is held; returns when the registry was last written for the host (ms, 0: never). */
  private seen(host: string, at: string): number {
    const prev = this.heard.get(host);
    this.heard.set(host, { at: prev && prev.at > at ? prev.at : at, written: prev?.written ?? 0 });
    return prev?.written ?? 0;
  }
}
