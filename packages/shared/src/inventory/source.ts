import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from "yaml";
import type { InputProblem } from "../errors.ts";

export type DocPath = readonly (string | number)[];

/** One parsed YAML file, kept so any later check can point at a line and column in it. */
export class SourceFile {
  readonly name: string;
  readonly doc: Document.Parsed;
  private readonly lines: LineCounter;

  private constructor(name: string, doc: Document.Parsed, lines: LineCounter) {
    this.name = name;
    this.doc = doc;
    this.lines = lines;
  }

  /**
   * Parses strictly: duplicate keys, syntax errors and unknown tags are
   * problems; so is an alias expansion beyond a small budget (alias bombs).
   */
  static parse(name: string, text: string): { file: SourceFile; value: unknown; problems: InputProblem[] } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, merge: false });
    const file = new SourceFile(name, doc, lines);
    const problems: InputProblem[] = [];
    for (const err of [...doc.errors, ...doc.warnings]) {
      // linePos is only filled in with prettyErrors; pos (an offset) always is.
      const pos = err.linePos?.[0] ?? lines.linePos(err.pos[0]);
      const message = err.code === "DUPLICATE_KEY"
        ? `key ${JSON.stringify(file.scalarAt(err.pos[0]) ?? text.slice(err.pos[0], err.pos[1]))} appears twice in this mapping`
        : yamlMessage(err.message);
      problems.push({ file: name, line: pos.line, col: pos.col, path: "", message });
    }
    if (problems.length > 0) return { file, value: undefined, problems };
    try {
      return { file, value: doc.toJS({ maxAliasCount: 100 }), problems };
    } catch (err) {
      const at = file.firstAlias() ?? { line: 1, col: 1 };
      const message = err instanceof ReferenceError
        ? "YAML aliases expand too far (more than 100 alias nodes); refusing a possible alias bomb"
        : `cannot read YAML: ${(err as Error).message}`;
      return { file, value: undefined, problems: [{ file: name, ...at, path: "", message }] };
    }
  }

  /** The position of the value at `path`, or of its key with `key`, or of the deepest node that exists. */
  position(path: DocPath, key = false): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let keyNode: unknown;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(segment));
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

  problem(path: DocPath, message: string, options: { key?: boolean } = {}): InputProblem {
    return { file: this.name, ...this.position(path, options.key), path: dotted(path), message };
  }

  /** The value of the scalar that starts at `offset`, e.g. a duplicate key. */
  private scalarAt(offset: number): string | undefined {
    let found: string | undefined;
    visit(this.doc, {
      Scalar: (_key, node) => {
        if (node.range?.[0] !== offset) return undefined;
        found = String(node.value);
        return visit.BREAK;
      },
    });
    return found;
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

/** `networks.secure.vms.a1.allow[0].to` */
export function dotted(path: DocPath): string {
  let out = "";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : out ? `.${seg}` : seg;
  return out;
}

function yamlMessage(message: string): string {
  const first = (message.split("\n")[0] ?? message).replace(/ at line \d+, column \d+:?$/, "");
  if (first.startsWith("Source contains multiple documents")) return "a file holds one YAML document; remove the `---` separator or split the file";
  return first;
}
