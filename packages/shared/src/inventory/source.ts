import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node, type Pair, type YAMLMap } from "yaml";
import { quoteToken, TOKEN_MAX_CHARS, type InputProblem } from "../errors.ts";

/** A path into a YAML document: mapping keys and sequence indexes, from the root. */
export type DocPath = readonly (string | number)[];

/** One parsed YAML file, kept so any later check can point at a line and column in it. */
export class SourceFile {
  readonly name: string;
  readonly doc: Document.Parsed;
  private readonly lines: LineCounter;
  /** Each mapping's pairs by key, built on first lookup: `position` is O(depth), not O(keys). */
  private readonly pairIndex = new WeakMap<YAMLMap, Map<string, Pair>>();

  private constructor(name: string, doc: Document.Parsed, lines: LineCounter) {
    this.name = name;
    this.doc = doc;
    this.lines = lines;
  }

  /**
   * Parses strictly: duplicate keys, syntax errors and unknown tags are
   * problems; so is an alias expansion beyond a small budget (alias bombs).
   * Linear in the size of the file: the `yaml` package's own duplicate-key
   * check compares each key with every earlier one of its mapping (20,000
   * keys took seconds), so it is off and `duplicateKeys` does it with one
   * Set per mapping.
   */
  static parse(name: string, text: string): { file: SourceFile; value: unknown; problems: InputProblem[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false, merge: false });
    const file = new SourceFile(name, doc, lines);
    const found: { offset: number; message: string }[] = [];
    for (const err of [...doc.errors, ...doc.warnings]) found.push({ offset: err.pos[0], message: yamlMessage(err.message) });
    for (const dup of duplicateKeys(doc.contents)) found.push(dup);
    // Document order; stable, so problems at one offset keep yaml's order.
    found.sort((a, b) => a.offset - b.offset);
    const problems = found.map(({ offset, message }): InputProblem => ({ file: name, ...lines.linePos(offset), path: "", message }));
    if (problems.length > 0) return { file, value: undefined, problems };
    try {
      return { file, value: doc.toJS({ maxAliasCount: 100 }), problems };
    } catch (err) {
      const at = file.firstAlias() ?? { line: 1, col: 1 };
      const text = (err as Error).message ?? "";
      const message = err instanceof ReferenceError && text.startsWith("Unresolved alias")
        ? "an alias (*name) comes before its anchor (&name) or has none; YAML needs the anchor first"
        : err instanceof ReferenceError
          ? "YAML aliases expand too far (more than 100 alias nodes); refusing a possible alias bomb"
          : `cannot read YAML: ${yamlMessage(text)}`;
      return { file, value: undefined, problems: [{ file: name, ...at, path: "", message }] };
    }
  }

  /** The position of the value at `path`, or of its key with `key`, or of the deepest node that exists. */
  position(path: DocPath, key = false): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let keyNode: unknown;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = this.pairsOf(node).get(String(segment));
        if (!pair) break;
        keyNode = pair.key;
        node = pair.value ?? pair.key;
      } else if (isSeq(node) && typeof segment === "number" && node.items[segment] !== undefined) {
        keyNode = node.items[segment];
        node = node.items[segment];
      } else {
        break;
      }
    }
    const target = (key && keyNode ? keyNode : node) as Node | null;
    const offset = target?.range?.[0] ?? 0;
    return this.lines.linePos(offset);
  }

  /** A problem at `path` (its value, or its key with `key`), the path dotted. */
  problem(path: DocPath, message: string, options: { key?: boolean } = {}): InputProblem {
    return { file: this.name, ...this.position(path, options.key), path: dotted(path), message };
  }

  /** The first pair of `map` for each scalar key, as the schema sees the mapping. */
  private pairsOf(map: YAMLMap): Map<string, Pair> {
    let index = this.pairIndex.get(map);
    if (!index) {
      index = new Map();
      for (const p of map.items) {
        if (!isPair(p) || !isScalar(p.key)) continue;
        const k = String(p.key.value);
        if (!index.has(k)) index.set(k, p);
      }
      this.pairIndex.set(map, index);
    }
    return index;
  }

  private firstAlias(): { line: number; col: number } | undefined {
    let offset: number | undefined;
    visit(this.doc, {
      Alias: (_key, node) => {
        offset = node.range?.[0];
        return visit.BREAK;
      },
    });
    return offset === undefined ? undefined : this.lines.linePos(offset);
  }
}

/**
 * Every second occurrence of a scalar key in one mapping, anywhere in the
 * tree, with one Set per mapping. Keys are compared as the loaded document
 * sees them, as strings: `1` and `"1"`, `true` and `"true"`, `~` and `null`
 * would become one key of the JS object, the later value silently winning,
 * so they are duplicates (the `yaml` package's `uniqueKeys` compares typed
 * values and lets those through). Aliases are not
 * followed (their anchor was walked where it stands). Iterative, so a deeply
 * nested document cannot exhaust the stack here.
 */
function duplicateKeys(root: unknown): { offset: number; message: string }[] {
  const out: { offset: number; message: string }[] = [];
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const item of node.items) {
        if (!isPair(item)) continue;
        const { key, value } = item;
        if (isScalar(key)) {
          const id = String(key.value);
          if (seen.has(id)) out.push({ offset: key.range?.[0] ?? 0, message: `key ${quoteToken(String(key.value))} appears twice in this mapping` });
          else seen.add(id);
        } else if (key && !isAlias(key)) {
          stack.push(key);
        }
        if (value && !isAlias(value)) stack.push(value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) if (item && !isAlias(item)) stack.push(item);
    }
  }
  return out;
}

/** `networks.secure.vms.a1.allow[0].to`; a key longer than TOKEN_MAX_CHARS is shortened with `...`. */
export function dotted(path: DocPath): string {
  let out = "";
  for (const seg of path) {
    const name = typeof seg === "number" ? `[${seg}]` : shorten(seg);
    out += typeof seg === "number" ? name : out ? `.${name}` : name;
  }
  return out;
}

function shorten(text: string, max = TOKEN_MAX_CHARS): string {
  if (text.length <= max) return text;
  const chars = Array.from(text.slice(0, 2 * max));
  return chars.length > max || text.length > 2 * max ? `${chars.slice(0, max).join("")}...` : text;
}

/**
 * The `yaml` package's message, first line only (with prettyErrors off it
 * carries no source excerpt; the first line is kept in any case), without
 * its own position (ours is in front). Its messages quote a few tokens from
 * the source (a tag, a directive, an escape sequence): any word longer than
 * TOKEN_MAX_CHARS is shortened and the message capped at 200 characters, so
 * a hostile file cannot fill the log through them; `formatProblem` escapes
 * what remains.
 */
function yamlMessage(message: string): string {
  const first = (message.split("\n")[0] ?? message).replace(/ at line \d+, column \d+:?$/, "");
  if (first.startsWith("Source contains multiple documents")) return "a file holds one YAML document; remove the `---` separator or split the file";
  // The reader recurses per level: thousands of nested [ or { exhaust the stack (a RangeError it reports as an error).
  if (first.includes("Maximum call stack size exceeded")) return "the document nests too deeply to read (an inventory needs a few levels)";
  const short = first.replace(/\S{61,}/g, (word) => shorten(word));
  return short.length > 200 ? `${shorten(short, 200)}` : short;
}
