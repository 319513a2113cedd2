import { writeOwned } from "@netfleet/agent";
import { escapeText, type Inventory } from "@netfleet/shared";
import type { CommandOutput } from "../output.ts";
import { buildGraph, GraphvizError, liveStates, renderDot, renderMermaid, renderSvg, type GraphModel, type HostLiveInput, type LiveStates } from "../graph/index.ts";

/** The picture formats of `netfleet graph`. */
export const GRAPH_FORMATS = ["svg", "dot", "mermaid"] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

/** Exit codes of `netfleet graph`: drawn; Graphviz or the controller failed; invalid input (the site folder, --out). */
export const GRAPH_EXIT = { drawn: 0, failed: 1, invalid: 2 } as const;

/**
 * The format `--format` names, else the one `--out`'s extension names
 * (.svg, .dot/.gv, .mmd/.mermaid), else svg.
 */
export function graphFormat(format: string | undefined, out: string | undefined): GraphFormat {
  if (format !== undefined) return format as GraphFormat;
  const ext = out?.toLowerCase().match(/\.([a-z]+)$/)?.[1];
  if (ext === "dot" || ext === "gv") return "dot";
  if (ext === "mmd" || ext === "mermaid") return "mermaid";
  return "svg";
}

/** The picture of `model` in `format`. @throws GraphvizError (svg only). */
export function renderGraph(model: GraphModel, format: GraphFormat, live?: LiveStates): Promise<string> {
  if (format === "dot") return Promise.resolve(renderDot(model, live));
  if (format === "mermaid") return Promise.resolve(renderMermaid(model, live));
  return renderSvg(model, live);
}

/**
 * `netfleet graph SITE`: draws the site (graph/model.ts) in `format`,
 * coloured by `hosts` when --live read them (graph/live-read.ts), to
 * `o.out` or stdout. With --json: one document with the elements (id, kind,
 * name, host, label, and with --live state and reason), the links, and the
 * picture (or `out`, the file it was written to). Nothing is written
 * unless the picture was drawn.
 * @returns GRAPH_EXIT.
 */
export async function graphCommand(inventory: Inventory, o: { format: GraphFormat; out?: string; hosts?: ReadonlyMap<string, HostLiveInput> }, out: CommandOutput): Promise<number> {
  const model = buildGraph(inventory);
  const live = o.hosts ? liveStates(model, o.hosts) : undefined;
  let picture: string;
  try {
    picture = await renderGraph(model, o.format, live);
  } catch (err) {
    if (!(err instanceof GraphvizError)) throw err;
    out.error(`netfleet graph: ${err.message}`);
    return GRAPH_EXIT.failed;
  }
  if (o.out !== undefined) {
    try {
      // the one atomic writer (random temp name, O_EXCL|O_NOFOLLOW, rename): never through a symlink, never blocked on a FIFO
      await writeOwned(o.out, picture, 0o644);
    } catch (err) {
      out.error(`netfleet graph: cannot write --out ${escapeText(o.out)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return GRAPH_EXIT.invalid;
    }
  }
  if (out.json) {
    out.emit({
      site: model.site,
      format: o.format,
      live: live !== undefined,
      elements: model.elements.map((e) => ({ ...e, ...(live?.[e.id] ? { state: live[e.id]!.state, reason: live[e.id]!.reason } : {}) })),
      links: model.links,
      ...(o.out !== undefined ? { out: o.out } : { picture }),
    });
  } else if (o.out === undefined) out.line(picture.replace(/\n$/, ""));
  else out.error(`netfleet graph: ${model.elements.length} elements, ${model.links.length} links${live ? `, ${summary(live)}` : ""} written to ${escapeText(o.out)} (${o.format})`);
  return GRAPH_EXIT.drawn;
}

/** "12 converged, 3 drift, 5 down" over the live states. */
function summary(live: LiveStates): string {
  const counts = new Map<string, number>();
  for (const s of Object.values(live)) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
  return ["converged", "drift", "down", "unknown"].filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${s}`).join(", ");
}
