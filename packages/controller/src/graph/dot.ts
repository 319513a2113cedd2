import { domId } from "./ids.ts";
import type { ElementState, LiveStates } from "./live.ts";
import type { GraphElement, GraphKind, GraphModel } from "./types.ts";

/**
 * The picture in Graphviz's DOT language (an undirected `graph`; the dot
 * layout ranks each link's `from` above its `to`). Every element is a node
 * named by its model id, with `id` = domId(its id) and `class` =
 * `nf-<kind>` (and `nf-<state>` with live states), which Graphviz copies
 * into its SVG (`<g id class>`, `<title>` = the node name); a host is a
 * cluster `cluster_<host id>`. Strings are quoted, `"` and `\` escaped
 * (Graphviz escString: a `\N` or `\G` in a name is text, not the node or
 * graph name); control characters become spaces. Source of the language:
 * graphviz.org/doc/info/lang.html, attrs.html.
 */
export function renderDot(model: GraphModel, live?: LiveStates): string {
  const out: string[] = [];
  out.push(`graph ${q(`netfleet ${model.site}`)} {`);
  out.push(`  graph [${attrs({ id: domId(`site:${model.site}`), class: "nf-site", label: `site ${model.site}${live ? " (live)" : ""}`, labelloc: "t", fontname: FONT, fontsize: "16", rankdir: "TB", newrank: "true", nodesep: "0.25", ranksep: "0.45" })}];`);
  out.push(`  node [${attrs({ fontname: FONT, fontsize: "10", shape: "box", style: "rounded,filled", margin: "0.12,0.05" })}];`);
  out.push(`  edge [${attrs({ fontname: FONT, fontsize: "9", color: "#607d8b" })}];`);
  for (const e of model.elements.filter((x) => x.host === undefined)) out.push(`  ${node(e, live)}`);
  for (const h of model.hosts) {
    const host = model.elements.find((e) => e.id === h.id)!;
    const state = live?.[h.id];
    const colors = state ? { fill: STATE_COLORS[state.state].pale, line: STATE_COLORS[state.state].line } : { fill: h.role === "backend" ? "#fff8f6" : "#f7f9fb", line: "#90a4ae" };
    out.push(`  subgraph ${q(`cluster_${h.id}`)} {`);
    out.push(
      `    graph [${attrs({ id: domId(h.id), class: classes(host, state?.state), label: host.label.join("\n"), style: "rounded,filled", fillcolor: colors.fill, color: colors.line, penwidth: state ? "2" : "1", fontname: FONT, fontsize: "12", ...(state ? { tooltip: state.reason } : {}) })}];`,
    );
    for (const e of model.elements.filter((x) => x.host === h.name && x.kind !== "host")) out.push(`    ${node(e, live)}`);
    out.push("  }");
  }
  for (const l of model.links) {
    const flow: Record<string, string> = l.style === "dotted" ? { color: "#7e57c2", fontcolor: "#5e35b1" } : {};
    out.push(
      `  ${q(l.from)} -- ${q(l.to)} [${attrs({ ...(l.label ? { label: l.label } : {}), ...(l.style && l.style !== "solid" ? { style: l.style } : {}), ...(l.arrow ? { dir: "forward" } : {}), ...flow, class: l.style === "dotted" ? "nf-link nf-flow" : "nf-link" })}];`,
    );
  }
  if (live) out.push(...legend());
  out.push("}");
  return out.join("\n") + "\n";
}

const FONT = "Helvetica,Arial,sans-serif";

/** Shape and fill of each kind without --live. */
const KIND_STYLE: Record<GraphKind, { shape: string; fill: string; style?: string }> = {
  host: { shape: "box", fill: "#ffffff" },
  nic: { shape: "box", fill: "#eceff1", style: "filled" },
  bond: { shape: "box", fill: "#fff3e0" },
  vlan: { shape: "cds", fill: "#f3e5f5", style: "filled" },
  trunk: { shape: "box3d", fill: "#e0f2f1", style: "filled" },
  patch: { shape: "cds", fill: "#f3e5f5", style: "filled" },
  bridge: { shape: "box3d", fill: "#e8f5e9", style: "filled" },
  "gateway-port": { shape: "cds", fill: "#fce4ec", style: "filled" },
  vm: { shape: "box", fill: "#fffde7" },
  network: { shape: "box", fill: "#e3f2fd", style: "rounded,filled,bold" },
  switch: { shape: "box", fill: "#fafafa", style: "rounded,filled,dashed" },
  gateway: { shape: "box", fill: "#ffebee", style: "rounded,filled,bold" },
  exit: { shape: "cds", fill: "#ffebee", style: "filled" },
  outside: { shape: "ellipse", fill: "#fafafa", style: "filled,dashed" },
  uplink: { shape: "box", fill: "#fff3e0" },
  vxlan: { shape: "cds", fill: "#f3e5f5", style: "filled" },
  underlay: { shape: "box", fill: "#fff3e0" },
  "underlay-network": { shape: "box", fill: "#fafafa", style: "rounded,filled,dashed" },
  "mirror-target": { shape: "box", fill: "#ede7f6", style: "rounded,filled,dashed" },
  collector: { shape: "cylinder", fill: "#ede7f6", style: "filled" },
};

/** Fill (node), pale fill (host box) and line colour of each live state. */
export const STATE_COLORS: Record<ElementState, { fill: string; pale: string; line: string }> = {
  converged: { fill: "#c8e6c9", pale: "#f1f8f1", line: "#2e7d32" },
  drift: { fill: "#ffe0b2", pale: "#fff6ea", line: "#ef6c00" },
  down: { fill: "#ffcdd2", pale: "#fdeeee", line: "#c62828" },
  unknown: { fill: "#eeeeee", pale: "#f7f7f7", line: "#9e9e9e" },
};

function classes(e: GraphElement, state?: ElementState): string {
  return `nf-${e.kind}${state ? ` nf-${state}` : ""}`;
}

function node(e: GraphElement, live?: LiveStates): string {
  const style = KIND_STYLE[e.kind];
  const state = live?.[e.id];
  const colors: Record<string, string> = state ? { fillcolor: STATE_COLORS[state.state].fill, color: STATE_COLORS[state.state].line, penwidth: "1.5" } : { fillcolor: style.fill, color: "#78909c" };
  return `${q(e.id)} [${attrs({ id: domId(e.id), class: classes(e, state?.state), label: e.label.join("\n"), shape: style.shape, ...(style.style ? { style: style.style } : {}), ...colors, ...(state ? { tooltip: `${e.label[0]}: ${state.state}: ${state.reason}` } : {}) })}];`;
}

/** The key of the colours, in a box of its own (elements `legend:<state>`). */
function legend(): string[] {
  const out = [`  subgraph "cluster_legend" {`, `    graph [${attrs({ id: "nf-legend", class: "nf-legend", label: "live state", style: "rounded", color: "#b0bec5", fontname: FONT, fontsize: "10" })}];`];
  const states: ElementState[] = ["converged", "drift", "down", "unknown"];
  for (const s of states) out.push(`    ${q(`legend:${s}`)} [${attrs({ id: `nf-legend-${s}`, class: `nf-legend-key nf-${s}`, label: s, fillcolor: STATE_COLORS[s].fill, color: STATE_COLORS[s].line })}];`);
  out.push("  }");
  return out;
}

function attrs(a: Record<string, string>): string {
  return Object.entries(a)
    .map(([k, v]) => `${k}=${q(v)}`)
    .join(" ");
}

/**
 * A DOT quoted string: `\` and `"` escaped (no escString sequence survives), `&` as `&amp;` (Graphviz reads
 * HTML entities in every string: `&amp;` would draw `&`), line breaks as `\n`, other control characters as spaces.
 */
export function q(text: string): string {
  const lines = text.split("\n").map((line) => line.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ").replace(/&/g, "&amp;").replace(/\\/g, "\\\\").replace(/"/g, '\\"'));
  return `"${lines.join("\\n")}"`;
}
