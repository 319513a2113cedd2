import type { Inventory } from "@netfleet/shared";
import type { ControlPlane } from "../control-plane.ts";
import type { UiListen } from "./listen.ts";
import { UiServer } from "./server.ts";
import { controlPlaneSource } from "./source.ts";
import { topologyRenderer } from "./topology.ts";

/** `netfleet serve --ui ADDRESS:PORT [--ui-allow-remote]` as parsed (ui/listen.ts). */
export interface UiOptions {
  listen: UiListen;
  /** Answer any Host header; the address may be remote (parseUiListen already allowed it). */
  allowRemote: boolean;
}

/**
 * Starts serve's dashboard on the controller's connection: logs
 * `ui-listening` with its URL, or `ui-unavailable` (level error) and
 * resolves undefined when it cannot listen; serve runs on either way.
 */
export async function startUi(o: UiOptions, cp: ControlPlane, inventory: Inventory, log: (event: Record<string, unknown>) => void): Promise<UiServer | undefined> {
  try {
    const server = await UiServer.start({
      listen: o.listen,
      allowRemote: o.allowRemote,
      source: controlPlaneSource(cp, inventory),
      log,
      topology: topologyRenderer,
    });
    log({ event: "ui-listening", url: server.url, remote: o.allowRemote });
    return server;
  } catch (err) {
    log({ event: "ui-unavailable", level: "error", error: (err as Error).message });
    return undefined;
  }
}
