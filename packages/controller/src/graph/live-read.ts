import type { Inventory } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import { requestShow } from "../nats/show.ts";
import { hostHealth } from "../store/status.ts";
import type { HostLiveInput } from "./live.ts";

/** How many agents are asked for their view at once (as `netfleet show`). */
const PARALLEL = 8;

/**
 * What `netfleet graph --live` reads: each inventory host's health (the
 * rows of `netfleet status`, store/status.ts readStatus and hostHealth at
 * `now` with `unreachableAfterMs`) and, for each host that is not
 * unreachable, what its agent sees (`netfleet show`'s request, nats/show.ts,
 * within `timeoutMs`, PARALLEL at once). A host whose agent does not answer
 * keeps its health and the reason. Reads only.
 * @throws when the status cannot be read (the registry, NATS).
 */
export async function readLive(cp: ControlPlane, inventory: Inventory, o: { timeoutMs: number; unreachableAfterMs: number; now?: number }): Promise<Map<string, HostLiveInput>> {
  const rows = await cp.status();
  const now = o.now ?? Date.now();
  const names = new Set(inventory.hosts.map((h) => h.name));
  const result = new Map<string, HostLiveInput>();
  for (const row of rows) if (names.has(row.host)) result.set(row.host, { health: hostHealth(row, now, o.unreachableAfterMs) });
  const asked = [...result].filter(([, input]) => input.health !== "unreachable").map(([host]) => host);
  let next = 0;
  const worker = async () => {
    while (next < asked.length) {
      const host = asked[next++]!;
      const input = result.get(host)!;
      try {
        const reply = await requestShow(cp.nc, cp.options.site, host, o.timeoutMs);
        if (reply.ok && reply.view) input.view = reply.view;
        else input.error = reply.error ?? "no view";
      } catch (err) {
        if (err instanceof TypeError || err instanceof ReferenceError) throw err;
        input.error = (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, asked.length) }, worker));
  return result;
}
