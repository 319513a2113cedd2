import type { Inventory } from "@netfleet/shared";
import type { UiHostRow } from "./source.ts";

/**
 * Renders the site's topology as an SVG document (text), coloured by the
 * hosts' status rows when given. The graph feature's renderer
 * (packages/controller/src/graph/) is plugged in here; undefined: no
 * renderer available (the page says so in the picture's place).
 */
export type TopologyRenderer = (inventory: Inventory, hosts?: readonly UiHostRow[]) => Promise<string>;

/** The renderer the dashboard uses; none until the graph feature's SVG renderer is wired in. */
export const topologyRenderer: TopologyRenderer | undefined = undefined;
