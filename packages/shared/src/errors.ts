/** A place in an input file, 1-based like editors show it. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** One problem in an input, reported as `file:line:col: path: message`. */
export interface InputProblem extends SourcePosition {
  /** Dotted path inside the document, e.g. `networks.secure.gateway`. */
  path: string;
  message: string;
}

export function formatProblem(p: InputProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path || "(document)"}: ${p.message}`;
}

/** Bad inventory: every problem found, in file order. Nothing was changed anywhere. */
export class InventoryError extends Error {
  readonly problems: InputProblem[];
  constructor(problems: InputProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "InventoryError";
    this.problems = problems;
  }
}

/** A message from the wire (NATS) or a document that does not decode. */
export class DecodeError extends Error {
  readonly source: string;
  readonly path: string;
  constructor(source: string, path: string, message: string) {
    super(`${source}: ${path || "(document)"}: ${message}`);
    this.name = "DecodeError";
    this.source = source;
    this.path = path;
  }
}

/** Output of a system tool that we could not understand; the resource is not touched. */
export class ParseError extends Error {
  readonly tool: string;
  readonly detail: string;
  constructor(tool: string, detail: string, options?: { cause?: unknown }) {
    super(`cannot parse output of ${tool}: ${detail}`, options);
    this.name = "ParseError";
    this.tool = tool;
    this.detail = detail;
  }
}
