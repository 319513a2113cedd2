/**
 * Test readers of the three pictures, so that tests compare what a reader
 * of each format gets with the model, not substrings: DOT through Graphviz
 * itself (`dot -Tjson0`, its own parser), SVG through an XML parser
 * (fast-xml-parser), Mermaid through a strict line reader of the flowchart
 * subset renderMermaid writes (any other line is an error).
 */
import { execFileSync } from "node:child_process";
import { XMLParser } from "fast-xml-parser";

/** What a reader found: nodes and host boxes by name with their label lines, and the links. */
export interface ReadPicture {
  nodes: Map<string, { label: string[]; id?: string; class?: string; box?: string; fill?: string }>;
  boxes: Map<string, { label: string[]; id?: string; class?: string; fill?: string }>;
  /** dashed: drawn dashed or dotted; arrow: with an arrowhead at `to`. */
  links: { from: string; to: string; label?: string; dashed: boolean; arrow: boolean }[];
}

/** DOT's escString as Graphviz stores it (`\n` a line break, `\\` a backslash; `&amp;` an `&`, as Graphviz draws it), in lines. */
function escLines(text: string): string[] {
  return text
    .replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))
    .replace(/&amp;/g, "&")
    .split("\n");
}

/** Reads DOT text with Graphviz (`dot -Tjson0`). */
export function readDot(dot: string): ReadPicture {
  const doc = JSON.parse(execFileSync("dot", ["-Tjson0"], { input: dot, encoding: "utf8", timeout: 30_000 })) as {
    objects: { _gvid: number; name: string; label?: string; id?: string; class?: string; nodes?: number[] }[];
    edges?: { tail: number; head: number; label?: string; style?: string; dir?: string }[];
  };
  const byGvid = new Map(doc.objects.map((o) => [o._gvid, o]));
  const out: ReadPicture = { nodes: new Map(), boxes: new Map(), links: [] };
  const boxOf = new Map<number, string>();
  for (const o of doc.objects) {
    if (!o.name.startsWith("cluster_")) continue;
    out.boxes.set(o.name.slice("cluster_".length), { label: escLines(o.label ?? ""), ...(o.id ? { id: o.id } : {}), ...(o.class ? { class: o.class } : {}) });
    for (const n of o.nodes ?? []) boxOf.set(n, o.name.slice("cluster_".length));
  }
  for (const o of doc.objects) {
    if (o.nodes !== undefined || o.name.startsWith("cluster_")) continue;
    out.nodes.set(o.name, { label: escLines(o.label ?? ""), ...(o.id ? { id: o.id } : {}), ...(o.class ? { class: o.class } : {}), ...(boxOf.has(o._gvid) ? { box: boxOf.get(o._gvid)! } : {}) });
  }
  for (const e of doc.edges ?? []) {
    out.links.push({ from: byGvid.get(e.tail)!.name, to: byGvid.get(e.head)!.name, ...(e.label ? { label: escLines(e.label).join("\n") } : {}), dashed: e.style === "dashed" || e.style === "dotted", arrow: e.dir === "forward" });
  }
  return out;
}

interface SvgGroup {
  id?: string;
  class?: string;
  title?: string | number;
  text?: (string | number | { "#text"?: string | number })[];
  g?: SvgGroup[];
  a?: Shapes[];
  path?: { "stroke-dasharray"?: string; fill?: string }[];
}

/** The shapes Graphviz draws a node, box or edge with (inside an `<a>` when it has a tooltip). */
interface Shapes {
  text?: SvgGroup["text"];
  path?: { fill?: string }[];
  polygon?: { fill?: string }[];
  ellipse?: { fill?: string }[];
}

/** A `<text>`'s characters; Graphviz writes the second of two spaces as U+00A0 to keep it, read here as the space it shows. */
const textOf = (t: NonNullable<SvgGroup["text"]>[number]) => String(typeof t === "object" ? (t["#text"] ?? "") : t).replace(/\u00a0/g, " ");

/** Reads Graphviz's SVG: each `<g class="node|cluster|edge ...">` with its `<title>`, `id`, `class` and `<text>` lines. */
export function readSvg(svg: string): ReadPicture & { root: string } {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "", htmlEntities: true, isArray: (name) => ["g", "text", "a", "path", "polygon", "ellipse"].includes(name) });
  const doc = parser.parse(svg) as { svg: { g: SvgGroup[] } };
  const out: ReadPicture = { nodes: new Map(), boxes: new Map(), links: [] };
  const groups: SvgGroup[] = [];
  const walk = (g: SvgGroup) => {
    groups.push(g);
    for (const child of g.g ?? []) walk(child);
  };
  doc.svg.g.forEach(walk);
  for (const g of groups) {
    const classes = (g.class ?? "").split(" ");
    const title = String(g.title ?? "");
    const texts = [...(g.text ?? []), ...(g.a ?? []).flatMap((a) => a.text ?? []), ...(g.g ?? []).flatMap((c) => (c.a ?? []).flatMap((a) => a.text ?? []))].map(textOf);
    const shapes: Shapes[] = [g as Shapes, ...(g.a ?? []), ...(g.g ?? []).flatMap((c) => c.a ?? [])];
    const fill = shapes.flatMap((x) => [...(x.polygon ?? []), ...(x.path ?? []), ...(x.ellipse ?? [])]).find((x) => x.fill !== undefined && x.fill !== "none")?.fill;
    const attrs = { ...(g.id ? { id: g.id } : {}), ...(g.class ? { class: g.class } : {}), ...(fill ? { fill } : {}) };
    if (classes[0] === "node") out.nodes.set(title, { label: texts, ...attrs });
    else if (classes[0] === "cluster") out.boxes.set(title.slice("cluster_".length), { label: texts, ...attrs });
    else if (classes[0] === "edge") {
      const [from, to] = title.split("--");
      const dashed = (g.path ?? []).some((p) => p["stroke-dasharray"] !== undefined);
      // Graphviz draws an arrowhead as a polygon in the edge's group.
      const arrow = ((g as Shapes).polygon ?? []).length > 0;
      out.links.push({ from: from!, to: to!, ...(texts.length ? { label: texts.join("\n") } : {}), dashed, arrow });
    }
  }
  return { ...out, root: String(doc.svg.g[0]?.class ?? "") };
}

const ENTITY: Record<string, string> = { quot: '"', "35": "#", lt: "<", gt: ">", amp: "&", "96": "`" };

/** A quoted Mermaid label back to its lines (entity codes decoded). */
function mermaidLabel(quoted: string): string[] {
  return quoted
    .slice(1, -1)
    .split("<br/>")
    .map((line) => line.replace(/#(quot|35|lt|gt|amp|96);/g, (_, e: string) => ENTITY[e]!));
}

/**
 * Reads the Mermaid flowchart subset renderMermaid writes: the header,
 * `subgraph ID["..."]` / `end`, nodes `ID` + one of `["..."]`, `{{"..."}}`,
 * `(["..."])`, `[["..."]]`, `[("...")]`, `>"..."]`, links `A --- B` / `A -.- B` /
 * `A --> B` / `A -.-> B` with an optional `|"..."|`, classDef/class/style lines.
 * @throws Error naming the first line it cannot read.
 */
export function readMermaid(text: string): ReadPicture & { classes: Map<string, string> } {
  const out: ReadPicture & { classes: Map<string, string> } = { nodes: new Map(), boxes: new Map(), links: [], classes: new Map() };
  const lines = text.replace(/\n$/, "").split("\n");
  if (lines[0] !== "flowchart TB") throw new Error(`line 1: ${lines[0]}`);
  let box: string | undefined;
  const ID = "[A-Za-z][A-Za-z0-9_]*";
  const Q = '"[^"]*"';
  lines.slice(1).forEach((line, i) => {
    let m: RegExpMatchArray | null;
    if ((m = line.match(new RegExp(`^ +subgraph (${ID})\\[(${Q})\\]$`)))) {
      if (box !== undefined) throw new Error(`line ${i + 2}: nested subgraph`);
      box = m[1]!;
      out.boxes.set(box, { label: mermaidLabel(m[2]!) });
    } else if (/^ +end$/.test(line)) {
      if (box === undefined) throw new Error(`line ${i + 2}: end without subgraph`);
      box = undefined;
    } else if ((m = line.match(new RegExp(`^ +(${ID})(?:\\[(${Q})\\]|\\{\\{(${Q})\\}\\}|\\(\\[(${Q})\\]\\)|\\[\\[(${Q})\\]\\]|>(${Q})\\]|\\[\\((${Q})\\)\\])$`)))) {
      const label = m[2] ?? m[3] ?? m[4] ?? m[5] ?? m[6] ?? m[7];
      if (out.nodes.has(m[1]!)) throw new Error(`line ${i + 2}: node ${m[1]} twice`);
      out.nodes.set(m[1]!, { label: mermaidLabel(label!), ...(box !== undefined ? { box } : {}) });
    } else if ((m = line.match(new RegExp(`^ +(${ID}) (---|-\\.-|-->|-\\.->)(?:\\|(${Q})\\|)? (${ID})$`)))) {
      out.links.push({ from: m[1]!, to: m[4]!, ...(m[3] ? { label: mermaidLabel(m[3]).join("\n") } : {}), dashed: m[2]!.includes("."), arrow: m[2]!.endsWith(">") });
    } else if ((m = line.match(new RegExp(`^ +class ((?:${ID},)*${ID}) (${ID})$`)))) {
      for (const id of m[1]!.split(",")) out.classes.set(id, m[2]!);
    } else if (!new RegExp(`^ +(classDef ${ID}|style ${ID}) [a-z-]+:[#a-z0-9]+(,[a-z-]+:[#a-z0-9]+)*$`).test(line)) {
      throw new Error(`line ${i + 2}: cannot read ${JSON.stringify(line)}`);
    }
  });
  if (box !== undefined) throw new Error("subgraph without end");
  return out;
}
