import { STATE_COLORS } from "./dot.ts";
import { mermaidId } from "./ids.ts";
import type { ElementState, LiveStates } from "./live.ts";
import type { GraphElement, GraphKind, GraphModel } from "./types.ts";

/**
 * The picture as a Mermaid flowchart (mermaid.js.org/syntax/flowchart.html),
 * for Markdown pages that render Mermaid: `flowchart TB`; a host is a
 * `subgraph`; every node id is mermaidId(element id) (letters, digits and
 * `_` only); labels are quoted, with `"`, `#`, `<`, `>`, `&` and backticks
 * written as Mermaid entity codes (`#quot;`, `#35;`, ...) so no label is
 * read as syntax, HTML or Markdown, and lines joined with `<br/>`. Plain
 * lines (`---`) are ports and cables, dotted ones (`-.-`) VLAN segments
 * and the route out, dotted arrows (`-.->`) copied traffic (mirrors,
 * samples to a collector). With live states, `classDef` per state and `class`
 * lines colour the nodes, `style` lines the host boxes.
 */
export function renderMermaid(model: GraphModel, live?: LiveStates): string {
  const out = ["flowchart TB"];
  for (const e of model.elements.filter((x) => x.host === undefined)) out.push(`  ${node(e)}`);
  for (const h of model.hosts) {
    const host = model.elements.find((e) => e.id === h.id)!;
    out.push(`  subgraph ${mermaidId(h.id)}[${text(host.label)}]`);
    for (const e of model.elements.filter((x) => x.host === h.name && x.kind !== "host")) out.push(`    ${node(e)}`);
    out.push("  end");
  }
  for (const l of model.links) {
    const line = l.arrow ? (l.style === "solid" || l.style === undefined ? "-->" : "-.->") : l.style === "dashed" || l.style === "dotted" ? "-.-" : "---";
    out.push(`  ${mermaidId(l.from)} ${line}${l.label ? `|${text([l.label])}|` : ""} ${mermaidId(l.to)}`);
  }
  const kinds = [...new Set(model.elements.filter((e) => e.kind !== "host").map((e) => e.kind))];
  if (live) {
    for (const [state, c] of Object.entries(STATE_COLORS)) out.push(`  classDef ${state} fill:${c.fill},stroke:${c.line},color:#000`);
    const byState = new Map<ElementState, string[]>();
    for (const e of model.elements.filter((x) => x.kind !== "host")) {
      const s = live[e.id]?.state;
      if (s) byState.set(s, [...(byState.get(s) ?? []), mermaidId(e.id)]);
    }
    for (const [state, ids] of byState) out.push(`  class ${ids.join(",")} ${state}`);
    for (const h of model.hosts) {
      const s = live[h.id]?.state;
      if (s) out.push(`  style ${mermaidId(h.id)} fill:${STATE_COLORS[s].pale},stroke:${STATE_COLORS[s].line}`);
    }
  } else {
    for (const k of kinds) out.push(`  classDef ${kindClass(k)} fill:${KIND_FILL[k]},stroke:#78909c,color:#000`);
    for (const k of kinds) out.push(`  class ${model.elements.filter((e) => e.kind === k).map((e) => mermaidId(e.id)).join(",")} ${kindClass(k)}`);
  }
  return out.join("\n") + "\n";
}

const KIND_FILL: Record<GraphKind, string> = {
  host: "#ffffff",
  nic: "#eceff1",
  bond: "#fff3e0",
  vlan: "#f3e5f5",
  trunk: "#e0f2f1",
  patch: "#f3e5f5",
  bridge: "#e8f5e9",
  "gateway-port": "#fce4ec",
  vm: "#fffde7",
  network: "#e3f2fd",
  switch: "#fafafa",
  gateway: "#ffebee",
  exit: "#ffebee",
  outside: "#fafafa",
  uplink: "#fff3e0",
  vxlan: "#f3e5f5",
  underlay: "#fff3e0",
  "underlay-network": "#fafafa",
  "mirror-target": "#ede7f6",
  collector: "#ede7f6",
};

/** A class name for a kind (`gateway-port` -> `kind_gateway_port`). */
function kindClass(kind: GraphKind): string {
  return `kind_${kind.replace(/-/g, "_")}`;
}

/** A node: its id and its quoted label in the shape of its kind. */
function node(e: GraphElement): string {
  const label = text(e.label);
  switch (e.kind) {
    case "network":
      return `${mermaidId(e.id)}{{${label}}}`;
    case "outside":
    case "switch":
    case "underlay-network":
      return `${mermaidId(e.id)}([${label}])`;
    case "collector":
      return `${mermaidId(e.id)}[(${label})]`;
    case "bridge":
    case "trunk":
      return `${mermaidId(e.id)}[[${label}]]`;
    case "vlan":
    case "patch":
    case "gateway-port":
    case "vxlan":
    case "exit":
      return `${mermaidId(e.id)}>${label}]`;
    default:
      return `${mermaidId(e.id)}[${label}]`;
  }
}

const ENTITIES: Record<string, string> = { '"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;" };

/** A quoted Mermaid label: each line's special characters as entity codes, control characters as spaces, lines joined by <br/>. */
export function text(lines: readonly string[]): string {
  return `"${lines.map((line) => line.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ").replace(/["#<>&`]/g, (c) => ENTITIES[c]!)).join("<br/>")}"`;
}
