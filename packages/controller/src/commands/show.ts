import { renderHostView } from "@netfleet/agent";
import { DNS_LABEL, escapeText, type HostView } from "@netfleet/shared";
import type { Connected } from "./connect.ts";
import type { CommandOutput } from "../output.ts";
import { requestShow } from "../nats/show.ts";
import { selectLimit, type Selectable } from "../select/limit.ts";

/** Exit codes of `netfleet show`: every host shown; a host did not answer or could not be read; an unknown host or a limit selecting nothing. */
export const SHOW_EXIT = { shown: 0, unanswered: 1, invalid: 2 } as const;

/** How many hosts are asked at once. */
const PARALLEL = 8;

/** A host named to `show` that neither the inventory nor the registry knows. */
export class UnknownHostError extends Error {
  constructor(host: string, known: readonly string[]) {
    const list = known.length === 0 ? "no host is known yet" : `known: ${known.slice(0, 20).join(", ")}${known.length > 20 ? ", ..." : ""}`;
    super(`unknown host ${JSON.stringify(host)}: not in the inventory and never enrolled (${list})`);
    this.name = "UnknownHostError";
  }
}

/** One host's answer as `show --json` prints it. */
export interface ShownHost {
  host: string;
  ok: boolean;
  /** The revision and assignment hash the agent runs (absent when it did not answer). */
  revision?: number;
  hash?: string | null;
  view?: HostView;
  error?: string;
}

/**
 * The hosts `show` asks: HOST (checked against the inventory and the
 * registry), or those `--limit` selects from them (select/limit.ts).
 * @throws UnknownHostError, LimitError.
 */
export async function showTargets(c: Connected, o: { host?: string; limit?: readonly string[] }): Promise<string[]> {
  const hosts: Selectable[] = [...(c.inventory?.hosts ?? [])];
  const listed = new Set(hosts.map((h) => h.name));
  for (const r of await c.cp.registry.list()) if (!listed.has(r.host) && DNS_LABEL.test(r.host)) hosts.push({ name: r.host });
  if (o.host !== undefined) {
    if (!hosts.some((h) => h.name === o.host)) throw new UnknownHostError(o.host, hosts.map((h) => h.name).sort());
    return [o.host];
  }
  return [...selectLimit(hosts, o.limit ?? [], c.cp.options.site)].sort();
}

/**
 * `netfleet show`: asks each host's agent what it sees (nats/show.ts, at most
 * PARALLEL at once, each within `timeoutMs`) and prints it, in the order
 * given: text (agent show/render.ts), or JSON (one host: its ShownHost;
 * several: `{ hosts: ShownHost[] }`). A host that does not answer, or whose
 * agent could not read it, is printed with the reason, and the exit code is
 * SHOW_EXIT.unanswered. Writes nothing anywhere.
 */
export async function showCommand(c: Connected, hosts: readonly string[], out: CommandOutput, o: { timeoutMs: number; single: boolean }): Promise<number> {
  const site = c.cp.options.site;
  const shown: ShownHost[] = new Array(hosts.length);
  let next = 0;
  const worker = async () => {
    while (next < hosts.length) {
      const i = next++;
      const host = hosts[i]!;
      try {
        const reply = await requestShow(c.cp.nc, site, host, o.timeoutMs);
        shown[i] = { host, ok: reply.ok, revision: reply.revision, hash: reply.hash, ...(reply.view ? { view: reply.view } : {}), ...(reply.error ? { error: reply.error } : {}) };
      } catch (err) {
        if (err instanceof TypeError || err instanceof ReferenceError) throw err;
        shown[i] = { host, ok: false, error: (err as Error).message };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, hosts.length) }, worker));
  if (out.json) out.emit(o.single ? shown[0] : { hosts: shown });
  else {
    shown.forEach((s, i) => {
      if (i > 0) out.line("");
      if (s.ok && s.view) out.line(renderHostView(s.view, { revision: s.revision ?? 0, hash: s.hash ?? null }).replace(/\n$/, ""));
      // The error text may come from the agent: escaped like everything it sends (renderHostView).
      else out.error(`netfleet show: ${s.host}: ${escapeText(s.error ?? "no view")}`);
    });
  }
  return shown.every((s) => s.ok && s.view) ? SHOW_EXIT.shown : SHOW_EXIT.unanswered;
}
