import type { Inventory } from "@netfleet/shared";
import { buildGraph, liveStates, renderSvg, type HostLiveInput } from "../graph/index.ts";
import type { UiHostRow } from "./source.ts";

/**
 * Renders the site's topology as an SVG document (text), coloured by the
 * hosts' status rows when given.
 */
export type TopologyRenderer = (inventory: Inventory, hosts?: readonly UiHostRow[]) => Promise<string>;

/**
 * The dashboard's picture: the graph feature's model and SVG (graph/,
 * Graphviz `dot -Tsvg`; each element a `<g>` with id domId(element id) and
 * class `nf-<kind> nf-<state>`), coloured from the hosts' health alone
 * (graph/live.ts liveStates without the agents' views: a page load asks no
 * agent anything; `netfleet graph --live` adds what each agent sees).
 * @throws GraphvizError when `dot` is missing or fails.
 */
export const topologyRenderer: TopologyRenderer = async (inventory, hosts) => {
  const model = buildGraph(inventory);
  const inputs = new Map<string, HostLiveInput>((hosts ?? []).filter((h) => h.inventory).map((h) => [h.host, { health: h.health }]));
  return renderSvg(model, hosts ? liveStates(model, inputs) : undefined);
};
