/**
 * The topology picture (`netfleet graph`): a site's graph model, its live
 * states, and the renderers. Pure except renderSvg (runs Graphviz `dot`)
 * and readLive (reads the control plane).
 */
import type { Inventory } from "@netfleet/shared";
import type { LiveStates } from "./live.ts";
import { buildGraph } from "./model.ts";
import { renderSvg } from "./svg.ts";

export { buildGraph } from "./model.ts";
export { graphId, type GraphElement, type GraphKind, type GraphLink, type GraphModel } from "./types.ts";
export { liveStates, type ElementLive, type ElementState, type HostLiveInput, type LiveStates } from "./live.ts";
export { renderDot, STATE_COLORS } from "./dot.ts";
export { renderMermaid } from "./mermaid.ts";
export { renderSvg, GraphvizError, DOT_SVG_ARGV } from "./svg.ts";
export { domId, mermaidId } from "./ids.ts";
export { readLive } from "./live-read.ts";

/**
 * The site's picture as an SVG document (no XML prolog, nothing external;
 * see renderSvg for its ids and classes), coloured by `live` when given
 * (liveStates over buildGraph(inventory) of the same inventory).
 * @throws GraphvizError when Graphviz's `dot` is missing or fails.
 */
export function topologySvg(inventory: Inventory, live?: LiveStates): Promise<string> {
  return renderSvg(buildGraph(inventory), live);
}
