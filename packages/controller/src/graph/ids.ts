/**
 * An element id as a DOM id and Mermaid node id: `nf-` and the id with
 * every character outside [A-Za-z0-9-] written `_` + its code point in hex
 * (`_` itself too), so that it is injective (two elements never share one),
 * needs no escaping in a CSS selector, and starts with a letter (Mermaid
 * reads a node id starting with `o` or `x` after a link as a link end).
 */
export function domId(id: string): string {
  return `nf-${[...id].map((c) => (/^[A-Za-z0-9-]$/.test(c) ? c : `_${c.codePointAt(0)!.toString(16)}_`)).join("")}`;
}

/**
 * An element id as a Mermaid node id: `n_` and the id with every character
 * outside [A-Za-z0-9] written `_` + its code point in hex + `_`. No `-` at
 * all: Mermaid's lexer reads `--`, `-.` and `->` inside a name as a link
 * (flow.jison NODE_STRING), and a name such as `xn--a` has one.
 */
export function mermaidId(id: string): string {
  return `n_${[...id].map((c) => (/^[A-Za-z0-9]$/.test(c) ? c : `_${c.codePointAt(0)!.toString(16)}_`)).join("")}`;
}
